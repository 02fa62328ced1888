//! What decoding a request message may allocate, bounded by its size on the wire before it is
//! decoded. A message's strings and bytes decode to at most their own length, but each entry of a
//! repeated field or a map becomes a structure of its own: an empty `inputs` entry is 2 bytes on
//! the wire and an `InferInputTensor` of about 300 bytes in memory, so that 8 MiB of them once
//! took 1.9 GiB. The messages with repeated fields are read here first, without allocating, and
//! their entries priced at what prost makes of them; a message whose structure would come to more
//! than [`MULTIPLE`] times its wire size plus [`ALLOWANCE`] is refused (INVALID_ARGUMENT). Its
//! tensors' own data (typed contents) are not counted: they are the tensor's bytes, which the
//! memory bound counts as such. Every other request message the services take has no repeated
//! field (a unit test holds that), so it decodes to at most its wire size and its fixed structure.

use std::any::TypeId;
use std::mem::size_of;

use super::proto::model_infer_request::{InferInputTensor, InferRequestedOutputTensor};
use super::proto::{InferParameter, ModelInferRequest};

/// Decoded structure may come to this many times the message's wire size, plus [`ALLOWANCE`].
pub const MULTIPLE: usize = 2;
/// Structure every message may have regardless of its size: room for a request with a thousand
/// inputs of one row each (a table's columns as inputs of their own), each with a parameter.
pub const ALLOWANCE: usize = 1 << 20;

/// What one entry of a repeated field costs once decoded, twice its size: a `Vec` grows by
/// doubling, a map's table up to twice its entries.
#[derive(Clone, Copy)]
enum Entry {
    /// A message, priced at `size`, whose own repeated fields are priced by its schema.
    Message(usize, &'static Schema),
    /// Bytes or a string, or a map entry: `size` plus its own bytes (counted in the wire size).
    Plain(usize),
    /// A packed or unpacked number of `size` bytes (a shape's dimensions).
    Number(usize),
}

/// The repeated fields of a message, by field number.
type Schema = [(u32, Entry)];

const fn map_entry<V>() -> Entry {
    Entry::Plain(2 * (size_of::<String>() + size_of::<V>()))
}

const CONTENTS: &Schema = &[(8, Entry::Plain(2 * size_of::<Vec<u8>>()))];
const INPUT: &Schema = &[
    (3, Entry::Number(2 * size_of::<i64>())),
    (4, map_entry::<InferParameter>()),
    // An optional message, inline in its input: only its own repeated fields cost.
    (5, Entry::Message(0, CONTENTS)),
];
const OUTPUT: &Schema = &[(2, map_entry::<InferParameter>())];
const INFER: &Schema = &[
    (4, map_entry::<InferParameter>()),
    (5, Entry::Message(2 * size_of::<InferInputTensor>(), INPUT)),
    (
        6,
        Entry::Message(2 * size_of::<InferRequestedOutputTensor>(), OUTPUT),
    ),
    (7, Entry::Plain(2 * size_of::<Vec<u8>>())),
];

/// The schema of the request messages with repeated fields, by their Rust type.
fn schema_of<U: 'static>() -> Option<&'static Schema> {
    (TypeId::of::<U>() == TypeId::of::<ModelInferRequest>()).then_some(INFER)
}

/// Why a message of type `U` is refused before it is decoded, if it is: its decoded structure
/// would outgrow its wire size, or it has a group (proto2's, which prost still skips in an unknown
/// field: one would hide what follows it from this reading). A message that is otherwise not
/// valid protobuf passes, for the decoder to refuse with its own message, unless what it has
/// before the fault is already too much (the decoder would build that first).
pub fn refusal<U: 'static>(wire: &[u8]) -> Option<String> {
    let schema = schema_of::<U>()?;
    let mut cost = 0;
    match structure(wire, schema, &mut cost) {
        Ok(()) | Err(Unread::Invalid) => {}
        Err(Unread::Group) => {
            return Some("the message has a group (wire type 3 or 4), which proto3 has not".into())
        }
    }
    let bound = wire
        .len()
        .saturating_mul(MULTIPLE)
        .saturating_add(ALLOWANCE);
    (cost > bound).then(|| {
        format!(
            "the message would decode to {cost} bytes of structure (its repeated fields' entries), more than {MULTIPLE} times its {} bytes plus {ALLOWANCE}: send fewer inputs, outputs or parameters",
            wire.len()
        )
    })
}

/// Why a message was not read to its end.
enum Unread {
    Group,
    Invalid,
}

/// Adds to `cost` the decoded cost of the repeated fields of `message` and of the messages in
/// them, as far as it can read.
fn structure(mut message: &[u8], schema: &Schema, cost: &mut usize) -> Result<(), Unread> {
    use Unread::Invalid;
    while !message.is_empty() {
        let key = varint(&mut message).ok_or(Invalid)?;
        let (number, wire_type) = (key >> 3, key & 7);
        let entry = schema
            .iter()
            .find(|(field, _)| u64::from(*field) == number)
            .map(|(_, entry)| *entry);
        match wire_type {
            // A varint: one number of a repeated numeric field, unpacked.
            0 => {
                varint(&mut message).ok_or(Invalid)?;
                if let Some(Entry::Number(size)) = entry {
                    *cost = cost.saturating_add(size);
                }
            }
            1 => message = message.get(8..).ok_or(Invalid)?,
            5 => message = message.get(4..).ok_or(Invalid)?,
            2 => {
                let length = varint(&mut message).ok_or(Invalid)?;
                let length = usize::try_from(length).map_err(|_| Invalid)?;
                let payload = message.get(..length).ok_or(Invalid)?;
                message = &message[length..];
                match entry {
                    Some(Entry::Message(size, inner)) => {
                        *cost = cost.saturating_add(size);
                        structure(payload, inner, cost)?;
                    }
                    Some(Entry::Plain(size)) => *cost = cost.saturating_add(size),
                    // Packed numbers: one per varint, each ending in a byte below 0x80.
                    Some(Entry::Number(size)) => {
                        let count = payload.iter().filter(|&&b| b < 0x80).count();
                        *cost = cost.saturating_add(size.saturating_mul(count));
                    }
                    None => {}
                }
            }
            3 | 4 => return Err(Unread::Group),
            _ => return Err(Invalid),
        }
    }
    Ok(())
}

/// Reads one base-128 varint off the front of `bytes`.
fn varint(bytes: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for (index, &byte) in bytes.iter().enumerate().take(10) {
        value |= u64::from(byte & 0x7f) << (7 * index);
        if byte < 0x80 {
            *bytes = &bytes[index + 1..];
            return Some(value);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::super::proto;
    use super::*;
    use prost::Message;

    fn iris() -> ModelInferRequest {
        ModelInferRequest {
            model_name: "iris-svc".into(),
            inputs: vec![InferInputTensor {
                name: "input".into(),
                datatype: "FP32".into(),
                shape: vec![1, 4],
                contents: Some(proto::InferTensorContents {
                    fp32_contents: vec![5.1, 3.5, 1.4, 0.2],
                    ..Default::default()
                }),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn ordinary_requests_pass_and_empty_entries_are_refused() {
        assert_eq!(refusal::<ModelInferRequest>(&iris().encode_to_vec()), None);
        // A thousand inputs of one row each, each with a parameter.
        let mut wide = iris();
        wide.inputs = (0..1000)
            .map(|index| InferInputTensor {
                name: format!("feature_{index}"),
                datatype: "FP32".into(),
                shape: vec![1, 1],
                parameters: [("p".to_string(), InferParameter::default())].into(),
                ..Default::default()
            })
            .collect();
        wide.raw_input_contents = vec![vec![0; 4]; 1000];
        assert_eq!(refusal::<ModelInferRequest>(&wide.encode_to_vec()), None);

        // 1 MiB of empty `inputs` entries (field 5, length 0): 2 bytes each.
        let empty_inputs = [0x2a, 0].repeat(512 << 10);
        let refused = refusal::<ModelInferRequest>(&empty_inputs).unwrap();
        assert!(
            refused.contains("more than 2 times its 1048576 bytes"),
            "{refused}"
        );
        let decoded = ModelInferRequest::decode(&empty_inputs[..]).unwrap();
        assert_eq!(decoded.inputs.len(), 512 << 10, "what the price is for");
        // Empty shapes' dimensions, packed: one byte each.
        let mut dims = vec![0x2a, 0x84, 0x80, 0x10, 0x1a, 0x80, 0x80, 0x10];
        dims.extend(std::iter::repeat_n(0u8, 1 << 18));
        assert!(refusal::<ModelInferRequest>(&dims).is_some());
        // Empty bytes entries, empty map entries, empty outputs.
        for tag in [0x3a, 0x22, 0x32] {
            let message = [tag, 0].repeat(512 << 10);
            assert!(refusal::<ModelInferRequest>(&message).is_some(), "{tag:#x}");
        }
    }

    /// Every request message the services take, and every message in it, has no repeated field
    /// (or map), but ModelInferRequest's, which its schema prices, all but its typed contents.
    #[test]
    fn only_the_inference_request_repeats_and_its_schema_prices_every_repeated_field() {
        use prost_types::field_descriptor_proto::Label;
        let set =
            prost_types::FileDescriptorSet::decode(super::super::FILE_DESCRIPTOR_SET).unwrap();
        let messages: std::collections::HashMap<String, &prost_types::DescriptorProto> = {
            fn walk<'a>(
                prefix: &str,
                messages: &'a [prost_types::DescriptorProto],
                into: &mut std::collections::HashMap<String, &'a prost_types::DescriptorProto>,
            ) {
                for message in messages {
                    let name = format!("{prefix}.{}", message.name());
                    walk(&name, &message.nested_type, into);
                    into.insert(name, message);
                }
            }
            let mut into = std::collections::HashMap::new();
            for file in &set.file {
                walk(
                    &format!(".{}", file.package()),
                    &file.message_type,
                    &mut into,
                );
            }
            into
        };
        // The repeated fields of a message and of the messages in it, as "Message.field".
        fn repeated(
            name: &str,
            messages: &std::collections::HashMap<String, &prost_types::DescriptorProto>,
            found: &mut Vec<String>,
        ) {
            let message = messages[name];
            if message
                .options
                .as_ref()
                .is_some_and(|options| options.map_entry())
            {
                return; // a map's entry: the map is the repeated field
            }
            for field in &message.field {
                if field.label() == Label::Repeated {
                    found.push(format!("{name}.{}", field.number()));
                }
                if !field.type_name().is_empty() {
                    repeated(field.type_name(), messages, found);
                }
            }
        }
        fn priced(schema: &'static Schema, name: &'static str) -> impl Iterator<Item = String> {
            schema
                .iter()
                // An optional message inline in its parent does not repeat: its fields are priced.
                .filter(|(_, entry)| !matches!(entry, Entry::Message(0, _)))
                .map(move |(number, _)| format!("{name}.{number}"))
        }
        let mut schema: Vec<String> = priced(INFER, ".inference.ModelInferRequest")
            .chain(priced(
                INPUT,
                ".inference.ModelInferRequest.InferInputTensor",
            ))
            .chain(priced(
                OUTPUT,
                ".inference.ModelInferRequest.InferRequestedOutputTensor",
            ))
            .chain(priced(CONTENTS, ".inference.InferTensorContents"))
            // The typed contents: the tensor's own data.
            .chain((1..=7).map(|number| format!(".inference.InferTensorContents.{number}")))
            .collect();
        schema.sort();
        for file in &set.file {
            for service in &file.service {
                for method in &service.method {
                    let mut found = Vec::new();
                    repeated(method.input_type(), &messages, &mut found);
                    found.sort();
                    if method.input_type() == ".inference.ModelInferRequest" {
                        assert_eq!(found, schema, "{}", method.name());
                    } else {
                        assert!(found.is_empty(), "{}: {found:?}", method.name());
                    }
                }
            }
        }
    }

    #[test]
    fn invalid_protobuf_is_left_to_the_decoder_and_other_messages_pass() {
        for bytes in [&[0x2a, 5, 1][..], &[0x80], &[0x2e], &[0xff; 11]] {
            assert_eq!(refusal::<ModelInferRequest>(bytes), None);
        }
        // A group in an unknown field (prost skips it), before empty inputs, and one nested in
        // an input: refused, not read past.
        let mut grouped = vec![0x9b, 0x06, 0x9c, 0x06];
        grouped.extend([0x2a, 0].repeat(512 << 10));
        assert!(refusal::<ModelInferRequest>(&grouped)
            .unwrap()
            .contains("group"));
        assert!(refusal::<ModelInferRequest>(&[0x2a, 2, 0x0b, 0x0c]).is_some());
        // Empty inputs, then a fault at the end: the decoder would build the inputs first.
        let mut faulty = [0x2a, 0].repeat(512 << 10);
        faulty.push(0x80);
        assert!(refusal::<ModelInferRequest>(&faulty)
            .unwrap()
            .contains("structure"));
        let empty = [0x2a, 0].repeat(512 << 10);
        assert_eq!(refusal::<proto::ModelReadyRequest>(&empty), None);
    }
}
