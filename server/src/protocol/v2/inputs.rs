//! The validate stage: a request's named input tensors checked against the bundle's
//! declarations and put in declaration order.

use crate::bundle::{Bundle, TensorSpec};
use crate::defaults;
use crate::serving::error::ServeError;
use crate::tensor::{shape_fits, DType, Tensor, TensorData};
use crate::text::{clip, quoted, ShapeText};

use super::{invalid, triton_words};

/// A request's input tensors, matched by name to the inputs the model's bundle declares (the
/// declarations alone, so that decoding needs no running model).
pub struct RequestInputs<'m> {
    bundle: &'m Bundle,
    tensors: Vec<Option<Tensor>>,
    /// BYTES elements of the inputs so far, bounded by [`defaults::MAX_STRING_ELEMENTS`].
    strings: usize,
}

/// Where one request input goes, and what its data must hold.
#[derive(Debug)]
pub struct InputSlot {
    index: usize,
    pub dtype: DType,
    pub shape: Vec<usize>,
    /// Elements the shape holds.
    pub count: usize,
}

impl<'m> RequestInputs<'m> {
    pub fn new(bundle: &'m Bundle) -> Self {
        RequestInputs {
            bundle,
            tensors: vec![None; bundle.public_inputs.len()],
            strings: 0,
        }
    }

    fn specs(&self) -> &'m [TensorSpec] {
        &self.bundle.public_inputs
    }

    /// Checks an input's name, datatype and shape against the model's declaration.
    pub fn slot(
        &mut self,
        name: &str,
        datatype: &str,
        shape: &[i64],
    ) -> Result<InputSlot, ServeError> {
        let specs = self.specs();
        let index = specs
            .iter()
            .position(|spec| spec.name == name)
            .ok_or_else(|| {
                invalid(format!(
                    "{}; its inputs are {}",
                    triton_words::unknown_input(name, self.bundle.name()),
                    quoted(specs.iter().map(|s| s.name.as_str()))
                ))
            })?;
        if self.tensors[index].is_some() {
            return Err(invalid(format!("input '{name}' is given twice")));
        }
        // The request's shape as messages show it: it may have any number of dimensions.
        let received = || clip(&ShapeText(shape).to_string());
        if let Some(axis) = shape.iter().position(|&dim| dim < 1) {
            return Err(invalid(format!(
                "input '{name}': dimension {axis} of shape {} is {}; a request gives the actual sizes, each at least 1",
                received(),
                shape[axis]
            )));
        }
        let spec = &specs[index];
        let expected = spec.dtype.v2_name();
        if datatype != expected {
            let known = if DType::from_v2_name(datatype).is_some() {
                ""
            } else {
                " (not a datatype of the protocol)"
            };
            return Err(invalid(format!(
                "input '{name}' expects datatype {expected}, received {}{known}",
                clip(datatype)
            )));
        }
        let dims: Option<Vec<usize>> = shape.iter().map(|&d| usize::try_from(d).ok()).collect();
        let dims = dims
            .filter(|dims| shape_fits(&spec.shape, dims))
            .ok_or_else(|| {
                invalid(format!(
                    "input '{name}' expects shape {} (-1: any size), received {}",
                    ShapeText(&spec.shape),
                    received()
                ))
            })?;
        let count = dims
            .iter()
            .try_fold(1usize, |count, &dim| count.checked_mul(dim))
            .ok_or_else(|| {
                invalid(format!(
                    "input '{name}': shape {} holds more elements than memory can",
                    received()
                ))
            })?;
        if spec.dtype.size().is_none() {
            self.strings = self.strings.saturating_add(count);
            if self.strings > defaults::MAX_STRING_ELEMENTS {
                return Err(invalid(format!(
                    "input '{name}': the request's BYTES inputs hold {} strings, more than this server takes in one request ({}); send fewer rows per request",
                    self.strings,
                    defaults::MAX_STRING_ELEMENTS
                )));
            }
        }
        Ok(InputSlot {
            index,
            dtype: spec.dtype,
            shape: dims,
            count,
        })
    }

    /// The name of the input a slot is for, for messages about its data.
    pub fn name(&self, slot: &InputSlot) -> &'m str {
        &self.specs()[slot.index].name
    }

    /// Checks that `bytes` of raw data fill the slot's shape, then decodes them (BYTES: each
    /// element its 4-byte length, then its bytes; `fill` checks their count).
    pub fn decode_raw(&self, slot: &InputSlot, bytes: &[u8]) -> Result<TensorData, ServeError> {
        let name = self.name(slot);
        if let Some(size) = slot.dtype.size() {
            let expected = slot.count.checked_mul(size).ok_or_else(|| {
                invalid(format!(
                    "input '{name}': shape {} of {} takes more bytes than memory can hold",
                    ShapeText(&slot.shape),
                    slot.dtype.v2_name()
                ))
            })?;
            if expected != bytes.len() {
                return Err(invalid(format!(
                    "input '{name}' has shape {} of {}, which takes {expected} bytes, but {} bytes were sent",
                    ShapeText(&slot.shape),
                    slot.dtype.v2_name(),
                    bytes.len()
                )));
            }
        }
        TensorData::from_le_bytes(slot.dtype, bytes, slot.count)
            .map_err(|problem| invalid(format!("input '{name}': {problem}")))
    }

    /// Puts the data of one input in its place, once its element count is checked.
    pub fn fill(&mut self, slot: InputSlot, data: TensorData) -> Result<(), ServeError> {
        let name = self.name(&slot);
        if data.len() != slot.count {
            return Err(invalid(format!(
                "input '{name}' has shape {}, which holds {} values, but {} were sent",
                ShapeText(&slot.shape),
                slot.count,
                data.len()
            )));
        }
        let tensor = Tensor::new(slot.shape, data).map_err(|e| invalid(e.to_string()))?;
        self.tensors[slot.index] = Some(tensor);
        Ok(())
    }

    /// The tensors in declaration order, once every declared input is there.
    pub fn finish(self) -> Result<Vec<Tensor>, ServeError> {
        let specs = self.specs();
        let missing: Vec<&str> = specs
            .iter()
            .zip(&self.tensors)
            .filter(|(_, tensor)| tensor.is_none())
            .map(|(spec, _)| spec.name.as_str())
            .collect();
        if !missing.is_empty() {
            return Err(invalid(format!(
                "missing input {}; model '{}' needs {}",
                quoted(missing.into_iter()),
                self.bundle.name(),
                quoted(specs.iter().map(|s| s.name.as_str()))
            )));
        }
        Ok(self.tensors.into_iter().flatten().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::v2::testing::iris;

    fn slot_refusal(name: &str, datatype: &str, shape: &[i64]) -> String {
        let bundle = iris();
        let mut inputs = RequestInputs::new(&bundle);
        match inputs.slot(name, datatype, shape) {
            Ok(_) => panic!("{name} {datatype} {shape:?} was accepted"),
            Err(error) => error.public_message().to_string(),
        }
    }

    #[test]
    fn each_check_of_a_slot_names_what_was_expected_and_received() {
        assert_eq!(
            slot_refusal("features", "FP32", &[1, 4]),
            "unexpected inference input 'features' for model 'iris'; its inputs are 'input'"
        );
        assert_eq!(
            slot_refusal("input", "FLOAT", &[1, 4]),
            "input 'input' expects datatype FP32, received FLOAT (not a datatype of the protocol)"
        );
        assert_eq!(
            slot_refusal("input", "FP32", &[1, 5]),
            "input 'input' expects shape [-1, 4] (-1: any size), received [1, 5]"
        );
        assert_eq!(
            slot_refusal("input", "FP32", &[0, 4]),
            "input 'input': dimension 0 of shape [0, 4] is 0; a request gives the actual sizes, each at least 1"
        );
    }

    #[test]
    fn an_input_is_filled_once_with_as_many_values_as_its_shape_holds() {
        let bundle = iris();
        let mut inputs = RequestInputs::new(&bundle);
        let slot = inputs.slot("input", "FP32", &[2, 4]).unwrap();
        assert_eq!((slot.count, slot.shape.as_slice()), (8, [2, 4].as_slice()));
        let error = inputs
            .fill(slot, TensorData::Float32(vec![0.0; 4]))
            .unwrap_err();
        assert_eq!(
            error.public_message(),
            "input 'input' has shape [2, 4], which holds 8 values, but 4 were sent"
        );
        let slot = inputs.slot("input", "FP32", &[1, 4]).unwrap();
        inputs
            .fill(slot, TensorData::Float32(vec![1.0; 4]))
            .unwrap();
        let error = inputs.slot("input", "FP32", &[1, 4]).unwrap_err();
        assert_eq!(error.public_message(), "input 'input' is given twice");
        let tensors = inputs.finish().unwrap();
        assert_eq!(tensors[0].shape(), [1, 4]);
    }
}
