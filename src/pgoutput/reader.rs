//! A cursor with checked big-endian reads, so that no input can index out of bounds.

use super::DecodeError;
use crate::lsn::Lsn;

/// Reads one message; every error names the message and the field being read.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    message: &'static str,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8], message: &'static str) -> Self {
        Reader {
            buf,
            pos: 0,
            message,
        }
    }

    /// Names the message once its tag is known, so later errors say what was being decoded.
    pub(crate) fn set_message(&mut self, message: &'static str) {
        self.message = message;
    }

    pub(crate) fn message(&self) -> &'static str {
        self.message
    }

    pub(crate) fn offset(&self) -> usize {
        self.pos
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    pub(crate) fn bytes(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], DecodeError> {
        let taken = self
            .pos
            .checked_add(n)
            .and_then(|end| self.buf.get(self.pos..end))
            .ok_or(DecodeError::Truncated {
                message: self.message,
                field,
                offset: self.pos,
                needed: n,
                available: self.remaining(),
            })?;
        self.pos += n;
        Ok(taken)
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.bytes(N, field)?);
        Ok(out)
    }

    pub(crate) fn u8(&mut self, field: &'static str) -> Result<u8, DecodeError> {
        Ok(self.array::<1>(field)?[0])
    }

    pub(crate) fn u16(&mut self, field: &'static str) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.array(field)?))
    }

    pub(crate) fn u32(&mut self, field: &'static str) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array(field)?))
    }

    pub(crate) fn i32(&mut self, field: &'static str) -> Result<i32, DecodeError> {
        Ok(i32::from_be_bytes(self.array(field)?))
    }

    pub(crate) fn i64(&mut self, field: &'static str) -> Result<i64, DecodeError> {
        Ok(i64::from_be_bytes(self.array(field)?))
    }

    pub(crate) fn lsn(&mut self, field: &'static str) -> Result<Lsn, DecodeError> {
        Ok(Lsn(u64::from_be_bytes(self.array(field)?)))
    }

    /// An Int32 length followed by that many bytes.
    pub(crate) fn counted_bytes(&mut self, field: &'static str) -> Result<&'a [u8], DecodeError> {
        let offset = self.pos;
        let length = self.i32(field)?;
        let n = usize::try_from(length).map_err(|_| DecodeError::NegativeLength {
            message: self.message,
            field,
            offset,
            length,
        })?;
        self.bytes(n, field)
    }

    /// Bytes that must be UTF-8; the error points at where they start.
    pub(crate) fn utf8(
        &self,
        bytes: &'a [u8],
        offset: usize,
        field: &'static str,
    ) -> Result<&'a str, DecodeError> {
        std::str::from_utf8(bytes).map_err(|_| DecodeError::InvalidUtf8 {
            message: self.message,
            field,
            offset,
        })
    }

    /// A NUL-terminated string; the NUL is consumed and not returned.
    pub(crate) fn cstr(&mut self, field: &'static str) -> Result<&'a str, DecodeError> {
        let offset = self.pos;
        let rest = self.buf.get(offset..).unwrap_or_default();
        let len = rest
            .iter()
            .position(|&b| b == 0)
            .ok_or(DecodeError::UnterminatedString {
                message: self.message,
                field,
                offset,
            })?;
        let bytes = self.bytes(len, field)?;
        self.pos += 1;
        self.utf8(bytes, offset, field)
    }

    /// Fails if anything is left: a complete message with spare bytes means we misparsed it.
    pub(crate) fn finish(&self) -> Result<(), DecodeError> {
        match self.remaining() {
            0 => Ok(()),
            extra => Err(DecodeError::TrailingBytes {
                message: self.message,
                consumed: self.pos,
                extra,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_big_endian_and_reports_truncation() {
        let mut r = Reader::new(&[0, 1, 0, 0, 0, 2, 9], "Test");
        assert_eq!(r.u16("a").unwrap(), 1);
        assert_eq!(r.u32("b").unwrap(), 2);
        let err = r.u32("c").unwrap_err();
        assert_eq!(
            err,
            DecodeError::Truncated {
                message: "Test",
                field: "c",
                offset: 6,
                needed: 4,
                available: 1
            }
        );
        assert_eq!(r.u8("d").unwrap(), 9);
        r.finish().unwrap();
    }

    #[test]
    fn cstr_needs_a_nul_and_utf8() {
        let mut r = Reader::new(b"abc\0de", "Test");
        assert_eq!(r.cstr("s").unwrap(), "abc");
        assert!(matches!(
            r.cstr("t"),
            Err(DecodeError::UnterminatedString { offset: 4, .. })
        ));
        let mut r = Reader::new(b"\xff\0", "Test");
        assert!(matches!(
            r.cstr("s"),
            Err(DecodeError::InvalidUtf8 { offset: 0, .. })
        ));
    }

    #[test]
    fn counted_bytes_rejects_negative_lengths() {
        let mut r = Reader::new(&[0xff, 0xff, 0xff, 0xff], "Test");
        assert!(matches!(
            r.counted_bytes("v"),
            Err(DecodeError::NegativeLength { length: -1, .. })
        ));
    }

    #[test]
    fn finish_reports_trailing_bytes() {
        let mut r = Reader::new(&[1, 2, 3], "Test");
        r.u8("a").unwrap();
        assert_eq!(
            r.finish(),
            Err(DecodeError::TrailingBytes {
                message: "Test",
                consumed: 1,
                extra: 2
            })
        );
    }
}
