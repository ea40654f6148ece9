//! TupleData: the column values of one row in an Insert, Update or Delete.

use super::reader::Reader;
use super::DecodeError;

/// One column value.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Value {
    /// `n`: SQL NULL.
    Null,
    /// `u`: a TOASTed value the UPDATE did not change, so the server did not send it. It is not
    /// NULL: the value is whatever it was before.
    UnchangedToast,
    /// `t`: the value in PostgreSQL's text output format.
    Text(String),
    /// `b`: the type's binary send format (only with the `binary` option, which we do not set).
    Binary(Vec<u8>),
}

impl Value {
    /// The text, if this is a text value.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Value::Text(s) => Some(s),
            _ => None,
        }
    }

    /// Whether this is SQL NULL.
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }
}

/// The values of one tuple, in the relation's column order.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct TupleData(pub Vec<Value>);

impl TupleData {
    /// Number of columns.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no columns.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Reads an Int16 column count and that many values.
pub(crate) fn read_tuple(r: &mut Reader<'_>) -> Result<TupleData, DecodeError> {
    let count = usize::from(r.u16("tuple column count")?);
    // Every value takes at least its kind byte: do not let a bogus count reserve memory.
    let mut values = Vec::with_capacity(count.min(r.remaining()));
    for _ in 0..count {
        let offset = r.offset();
        let value = match r.u8("tuple value kind")? {
            b'n' => Value::Null,
            b'u' => Value::UnchangedToast,
            b't' => {
                let start = r.offset() + 4;
                let bytes = r.counted_bytes("text value")?;
                Value::Text(r.utf8(bytes, start, "text value")?.to_owned())
            }
            b'b' => Value::Binary(r.counted_bytes("binary value")?.to_vec()),
            found => {
                return Err(DecodeError::UnexpectedByte {
                    message: r.message(),
                    field: "tuple value kind",
                    offset,
                    found,
                    expected: "'n', 'u', 't' or 'b'",
                })
            }
        };
        values.push(value);
    }
    Ok(TupleData(values))
}

/// Appends `tuple` in wire format.
pub(crate) fn write_tuple(out: &mut Vec<u8>, tuple: &TupleData) {
    // The wire count is an Int16; pgoutput never sends more than 1664 columns.
    let count = u16::try_from(tuple.0.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&count.to_be_bytes());
    for value in tuple.0.iter().take(usize::from(count)) {
        match value {
            Value::Null => out.push(b'n'),
            Value::UnchangedToast => out.push(b'u'),
            Value::Text(s) => write_counted(out, b't', s.as_bytes()),
            Value::Binary(b) => write_counted(out, b'b', b),
        }
    }
}

fn write_counted(out: &mut Vec<u8>, kind: u8, bytes: &[u8]) {
    out.push(kind);
    let len = i32::try_from(bytes.len()).unwrap_or(i32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(bytes.get(..len as usize).unwrap_or(bytes));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(buf: &[u8]) -> Result<TupleData, DecodeError> {
        let mut r = Reader::new(buf, "Test");
        let t = read_tuple(&mut r)?;
        r.finish()?;
        Ok(t)
    }

    #[test]
    fn decodes_every_value_kind() {
        let buf = [
            0, 4, // four columns
            b'n', b'u', b't', 0, 0, 0, 3, b'4', b'2', b'!', b'b', 0, 0, 0, 2, 0xde, 0xad,
        ];
        assert_eq!(
            decode(&buf).unwrap(),
            TupleData(vec![
                Value::Null,
                Value::UnchangedToast,
                Value::Text("42!".into()),
                Value::Binary(vec![0xde, 0xad]),
            ])
        );
    }

    #[test]
    fn empty_text_and_zero_columns() {
        assert_eq!(
            decode(&[0, 1, b't', 0, 0, 0, 0]).unwrap().0,
            vec![Value::Text(String::new())]
        );
        assert!(decode(&[0, 0]).unwrap().is_empty());
    }

    #[test]
    fn rejects_invalid_utf8_with_its_offset() {
        let err = decode(&[0, 1, b't', 0, 0, 0, 1, 0xff]).unwrap_err();
        assert_eq!(
            err,
            DecodeError::InvalidUtf8 {
                message: "Test",
                field: "text value",
                offset: 7
            }
        );
    }

    #[test]
    fn rejects_unknown_kind_and_truncation() {
        assert!(matches!(
            decode(&[0, 1, b'x']),
            Err(DecodeError::UnexpectedByte {
                found: b'x',
                offset: 2,
                ..
            })
        ));
        assert!(matches!(
            decode(&[0, 2, b'n']),
            Err(DecodeError::Truncated { .. })
        ));
        assert!(matches!(
            decode(&[0, 1, b't', 0, 0, 0, 5, b'a']),
            Err(DecodeError::Truncated {
                needed: 5,
                available: 1,
                ..
            })
        ));
        assert!(matches!(
            decode(&[0, 1, b't', 0x80, 0, 0, 0]),
            Err(DecodeError::NegativeLength { .. })
        ));
    }

    #[test]
    fn write_then_read() {
        let t = TupleData(vec![
            Value::Text("é".into()),
            Value::Null,
            Value::Binary(vec![]),
            Value::UnchangedToast,
        ]);
        let mut buf = Vec::new();
        write_tuple(&mut buf, &t);
        assert_eq!(decode(&buf).unwrap(), t);
    }
}
