//! A graph's outputs shaped as a bundle declares: token-level vectors pooled to one per row
//! (sentence embeddings), L2 normalisation, softmax over classes. Each works on rows of floats laid
//! out row after row, as ONNX Runtime gives them.

/// How a row's token vectors become one vector (`pooling.method` of a bundle).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Pooling {
    /// The mean of the vectors whose attention mask is 1 (sentence-transformers' default).
    Mean,
    /// The first token's vector (BERT's `[CLS]`).
    First,
    /// Each dimension's greatest value among the vectors whose mask is 1.
    Max,
}

impl Pooling {
    /// Its name in a bundle.
    pub fn name(self) -> &'static str {
        match self {
            Pooling::Mean => "mean",
            Pooling::First => "first",
            Pooling::Max => "max",
        }
    }
}

/// Token-level vectors of `rows × length × dim` floats pooled to `rows × dim`, each row over the
/// tokens its `attention_mask` (`rows × length`) marks with a nonzero value. A row with no such
/// token (which a tokenizer does not give: it adds its special tokens) pools to zeros.
pub fn pool(
    pooling: Pooling,
    tokens: &[f32],
    attention_mask: &[i64],
    rows: usize,
    length: usize,
    dim: usize,
) -> Vec<f32> {
    debug_assert_eq!(tokens.len(), rows * length * dim);
    debug_assert_eq!(attention_mask.len(), rows * length);
    let mut pooled = vec![0.0f32; rows * dim];
    for (row, out) in pooled.chunks_exact_mut(dim.max(1)).enumerate().take(rows) {
        let vectors = &tokens[row * length * dim..(row + 1) * length * dim];
        let mask = &attention_mask[row * length..(row + 1) * length];
        let kept = || {
            vectors
                .chunks_exact(dim)
                .zip(mask)
                .filter(|(_, &mask)| mask != 0)
                .map(|(vector, _)| vector)
        };
        match pooling {
            Pooling::First => {
                if length > 0 {
                    out.copy_from_slice(&vectors[..dim]);
                }
            }
            Pooling::Mean => {
                // Summed in f64, as the reference's f32 mean over at most a few hundred tokens
                // loses less than the bundle's tolerance either way.
                let mut sums = vec![0.0f64; dim];
                let mut count = 0usize;
                for vector in kept() {
                    for (sum, &value) in sums.iter_mut().zip(vector) {
                        *sum += f64::from(value);
                    }
                    count += 1;
                }
                if count > 0 {
                    for (out, sum) in out.iter_mut().zip(sums) {
                        *out = (sum / count as f64) as f32;
                    }
                }
            }
            Pooling::Max => {
                let mut any = false;
                for vector in kept() {
                    if !any {
                        out.copy_from_slice(vector);
                        any = true;
                    } else {
                        for (out, &value) in out.iter_mut().zip(vector) {
                            *out = out.max(value);
                        }
                    }
                }
            }
        }
    }
    pooled
}

/// Each row of `dim` floats divided by its Euclidean norm (a zero row stays zero), as
/// `torch.nn.functional.normalize` does (with its floor of 1e-12 on the norm).
pub fn normalize_l2(vectors: &mut [f32], dim: usize) {
    for row in vectors.chunks_exact_mut(dim.max(1)) {
        let norm = row
            .iter()
            .map(|&value| f64::from(value) * f64::from(value))
            .sum::<f64>()
            .sqrt()
            .max(1e-12);
        for value in row {
            *value = (f64::from(*value) / norm) as f32;
        }
    }
}

/// Each row of `classes` scores turned into probabilities (numerically stable: the row's greatest
/// score is subtracted first).
pub fn softmax(scores: &mut [f32], classes: usize) {
    for row in scores.chunks_exact_mut(classes.max(1)) {
        let greatest = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut total = 0.0f64;
        for value in row.iter_mut() {
            let exp = f64::from(*value - greatest).exp();
            *value = exp as f32;
            total += exp;
        }
        for value in row {
            *value = (f64::from(*value) / total) as f32;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two rows of three tokens of two dimensions; the first row's last token is padding.
    const TOKENS: [f32; 12] = [
        1.0, 2.0, 3.0, -4.0, 100.0, 100.0, //
        -1.0, 0.5, 2.0, 1.5, 0.0, -2.5,
    ];
    const MASK: [i64; 6] = [1, 1, 0, 1, 1, 1];

    #[test]
    fn mean_pooling_averages_the_masked_tokens_only() {
        let pooled = pool(Pooling::Mean, &TOKENS, &MASK, 2, 3, 2);
        assert_eq!(pooled, [2.0, -1.0, 1.0 / 3.0, -0.5 / 3.0]);
    }

    #[test]
    fn first_and_max_pooling() {
        assert_eq!(
            pool(Pooling::First, &TOKENS, &MASK, 2, 3, 2),
            [1.0, 2.0, -1.0, 0.5]
        );
        // The padding's 100s are not the first row's maximum.
        assert_eq!(
            pool(Pooling::Max, &TOKENS, &MASK, 2, 3, 2),
            [3.0, 2.0, 2.0, 1.5]
        );
    }

    #[test]
    fn a_row_without_tokens_pools_to_zeros() {
        let pooled = pool(Pooling::Mean, &TOKENS[..6], &[0, 0, 0], 1, 3, 2);
        assert_eq!(pooled, [0.0, 0.0]);
    }

    #[test]
    fn normalised_rows_have_unit_length_and_zero_stays_zero() {
        let mut vectors = [3.0, 4.0, 0.0, 0.0];
        normalize_l2(&mut vectors, 2);
        assert_eq!(vectors, [0.6, 0.8, 0.0, 0.0]);
    }

    #[test]
    fn softmax_rows_sum_to_one_even_for_large_scores() {
        let mut scores = [1000.0, 1000.0, 0.0, f32::ln(3.0)];
        softmax(&mut scores, 2);
        assert_eq!(&scores[..2], &[0.5, 0.5]);
        assert!((scores[2] - 0.25).abs() < 1e-6 && (scores[3] - 0.75).abs() < 1e-6);
    }
}
