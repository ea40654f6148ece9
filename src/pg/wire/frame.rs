//! Backend messages out of the read buffer, one complete frame at a time.
//!
//! `Message::parse` does not know `CopyBothResponse` (`W`), so we read the 5-byte header
//! ourselves and decode the frames we care about here; the rest goes to `Message::parse`.

use bytes::{Buf, Bytes, BytesMut};
use postgres_protocol::message::backend::Message;

use super::error::DbError;

/// A frame longer than this is a broken or hostile peer, not a reason to allocate.
pub(crate) const MAX_FRAME: usize = 1 << 30;
/// Reserve at most this much ahead of the data actually arriving.
const MAX_RESERVE: usize = 1 << 20;

pub(crate) enum Backend {
    CopyBothResponse,
    CopyData(Bytes),
    CopyDone,
    Error(DbError),
    Notice(DbError),
    ParameterStatus {
        name: String,
        value: String,
    },
    RowDescription(Vec<String>),
    DataRow(Vec<Option<String>>),
    /// `AuthenticationSASL` with its mechanisms (its body iterator would need another crate).
    Sasl(Vec<String>),
    Other(Message),
}

impl Backend {
    /// For error messages (postgres-protocol's `Message` has no `Debug`).
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Backend::CopyBothResponse => "CopyBothResponse",
            Backend::CopyData(_) => "CopyData",
            Backend::CopyDone => "CopyDone",
            Backend::Error(_) => "ErrorResponse",
            Backend::Notice(_) => "NoticeResponse",
            Backend::ParameterStatus { .. } => "ParameterStatus",
            Backend::RowDescription(_) => "RowDescription",
            Backend::DataRow(_) => "DataRow",
            Backend::Sasl(_) => "AuthenticationSASL",
            Backend::Other(m) => match m {
                Message::AuthenticationOk => "AuthenticationOk",
                Message::AuthenticationCleartextPassword => "AuthenticationCleartextPassword",
                Message::AuthenticationMd5Password(_) => "AuthenticationMD5Password",
                Message::AuthenticationSaslContinue(_) => "AuthenticationSASLContinue",
                Message::AuthenticationSaslFinal(_) => "AuthenticationSASLFinal",
                Message::BackendKeyData(_) => "BackendKeyData",
                Message::CommandComplete(_) => "CommandComplete",
                Message::CopyInResponse(_) => "CopyInResponse",
                Message::CopyOutResponse(_) => "CopyOutResponse",
                Message::EmptyQueryResponse => "EmptyQueryResponse",
                Message::ReadyForQuery(_) => "ReadyForQuery",
                _ => "(other)",
            },
        }
    }
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Takes one complete frame off `buf`, or returns `None` (consuming nothing) when more bytes are
/// needed. Errors are protocol violations, described for the message.
pub(crate) fn parse(buf: &mut BytesMut) -> Result<Option<Backend>, String> {
    if buf.len() < 5 {
        return Ok(None);
    }
    let tag = buf[0];
    let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
    if !(4..=MAX_FRAME).contains(&len) {
        return Err(format!(
            "message {:?} has invalid length {len}",
            char::from(tag)
        ));
    }
    let total = len + 1;
    if buf.len() < total {
        buf.reserve((total - buf.len()).min(MAX_RESERVE));
        return Ok(None);
    }
    let mut frame = buf.split_to(total);
    let body = frame.clone().freeze().slice(5..);
    let t = char::from(tag);
    let bad = |what: &str| format!("malformed {t:?} message: {what}");
    Ok(Some(match tag {
        b'W' => Backend::CopyBothResponse,
        b'd' => Backend::CopyData(body),
        b'c' => Backend::CopyDone,
        b'E' => Backend::Error(error_fields(body).map_err(|e| bad(&e))?),
        b'N' => Backend::Notice(error_fields(body).map_err(|e| bad(&e))?),
        b'S' => {
            let mut r = Reader(body);
            let name = r.cstr().map_err(|e| bad(&e))?;
            let value = r.cstr().map_err(|e| bad(&e))?;
            Backend::ParameterStatus { name, value }
        }
        b'T' => Backend::RowDescription(row_description(body).map_err(|e| bad(&e))?),
        b'D' => Backend::DataRow(data_row(body).map_err(|e| bad(&e))?),
        b'R' if body.len() >= 4 && body[..4] == 10u32.to_be_bytes() => {
            let mut r = Reader(body.slice(4..));
            let mut mechs = Vec::new();
            loop {
                let m = r.cstr().map_err(|e| bad(&e))?;
                if m.is_empty() {
                    break;
                }
                mechs.push(m);
            }
            Backend::Sasl(mechs)
        }
        _ => match Message::parse(&mut frame) {
            Ok(Some(m)) => Backend::Other(m),
            Ok(None) => return Err(bad("incomplete")),
            Err(e) => return Err(format!("unexpected message {t:?}: {e}")),
        },
    }))
}

struct Reader(Bytes);

impl Reader {
    fn cstr(&mut self) -> Result<String, String> {
        let end = self
            .0
            .iter()
            .position(|b| *b == 0)
            .ok_or("unterminated string")?;
        let s = self.0.split_to(end);
        self.0.advance(1);
        String::from_utf8(s.to_vec()).map_err(|_| "string is not UTF-8".to_string())
    }

    fn need(&self, n: usize) -> Result<(), String> {
        if self.0.len() < n {
            return Err("truncated".to_string());
        }
        Ok(())
    }

    fn i16(&mut self) -> Result<i16, String> {
        self.need(2)?;
        Ok(self.0.get_i16())
    }

    fn i32(&mut self) -> Result<i32, String> {
        self.need(4)?;
        Ok(self.0.get_i32())
    }
}

fn error_fields(body: Bytes) -> Result<DbError, String> {
    let mut r = Reader(body);
    let mut e = DbError::default();
    let mut localized_severity = String::new();
    loop {
        r.need(1)?;
        let field = r.0.get_u8();
        if field == 0 {
            break;
        }
        let v = r.cstr()?;
        match field {
            b'S' => localized_severity = v,
            b'V' => e.severity = v,
            b'C' => e.code = v,
            b'M' => e.message = v,
            b'D' => e.detail = Some(v),
            b'H' => e.hint = Some(v),
            b'P' => e.position = Some(v),
            b'W' => e.where_ = Some(v),
            b's' => e.schema = Some(v),
            b't' => e.table = Some(v),
            b'c' => e.column = Some(v),
            b'n' => e.constraint = Some(v),
            b'R' => e.routine = Some(v),
            _ => {} // the protocol says to ignore fields we do not know
        }
    }
    if e.severity.is_empty() {
        e.severity = localized_severity;
    }
    Ok(e)
}

fn row_description(body: Bytes) -> Result<Vec<String>, String> {
    let mut r = Reader(body);
    let n = r.i16()?;
    let mut names = Vec::with_capacity(n.max(0) as usize);
    for _ in 0..n {
        names.push(r.cstr()?);
        // table oid, column number, type oid, type size, type modifier, format code
        r.need(18)?;
        r.0.advance(18);
    }
    Ok(names)
}

fn data_row(body: Bytes) -> Result<Vec<Option<String>>, String> {
    let mut r = Reader(body);
    let n = r.i16()?;
    let mut values = Vec::with_capacity(n.max(0) as usize);
    for _ in 0..n {
        let len = r.i32()?;
        if len < 0 {
            values.push(None);
            continue;
        }
        let len = len as usize;
        r.need(len)?;
        let v = r.0.split_to(len);
        let s = String::from_utf8(v.to_vec()).map_err(|_| "value is not UTF-8".to_string())?;
        values.push(Some(s));
    }
    Ok(values)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut v = vec![tag];
        v.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
        v.extend_from_slice(body);
        v
    }

    #[test]
    fn partial_frames_consume_nothing() {
        let whole = frame(b'd', b"wxyz");
        for cut in 0..whole.len() {
            let mut buf = BytesMut::from(&whole[..cut]);
            assert!(parse(&mut buf).unwrap().is_none());
            assert_eq!(buf.len(), cut);
        }
        let mut buf = BytesMut::from(&whole[..]);
        buf.extend_from_slice(&frame(b'c', b""));
        match parse(&mut buf).unwrap() {
            Some(Backend::CopyData(b)) => assert_eq!(&b[..], b"wxyz"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(parse(&mut buf).unwrap(), Some(Backend::CopyDone)));
        assert!(buf.is_empty());
    }

    #[test]
    fn absurd_lengths_are_errors_not_allocations() {
        let mut buf = BytesMut::from(&[b'd', 0xff, 0xff, 0xff, 0xff][..]);
        assert!(parse(&mut buf).unwrap_err().contains("invalid length"));
        let mut buf = BytesMut::from(&[b'd', 0, 0, 0, 3][..]);
        assert!(parse(&mut buf).is_err());
    }

    #[test]
    fn copy_both_and_errors() {
        let mut buf = BytesMut::from(&frame(b'W', &[0, 0, 0])[..]);
        assert!(matches!(
            parse(&mut buf).unwrap(),
            Some(Backend::CopyBothResponse)
        ));
        let body = b"SFEHLER\0VFATAL\0C28P01\0Mpassword authentication failed for user \"x\"\0Htry again\0Zfuture\0\0";
        let mut buf = BytesMut::from(&frame(b'E', body)[..]);
        match parse(&mut buf).unwrap() {
            Some(Backend::Error(e)) => {
                assert_eq!(e.severity, "FATAL");
                assert_eq!(e.code, "28P01");
                assert_eq!(e.hint.as_deref(), Some("try again"));
                assert_eq!(
                    e.to_string(),
                    "FATAL 28P01: password authentication failed for user \"x\"; HINT: try again"
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn rows_and_sasl() {
        let mut t = vec![0, 2];
        for name in ["a", "bc"] {
            t.extend_from_slice(name.as_bytes());
            t.push(0);
            t.extend_from_slice(&[0; 18]);
        }
        let mut d = vec![0, 2, 0, 0, 0, 2, b'h', b'i', 0xff, 0xff, 0xff, 0xff];
        let mut buf = BytesMut::from(&frame(b'T', &t)[..]);
        buf.extend_from_slice(&frame(b'D', &d));
        buf.extend_from_slice(&frame(
            b'R',
            b"\0\0\0\x0aSCRAM-SHA-256-PLUS\0SCRAM-SHA-256\0\0",
        ));
        match parse(&mut buf).unwrap() {
            Some(Backend::RowDescription(c)) => assert_eq!(c, ["a", "bc"]),
            other => panic!("{other:?}"),
        }
        match parse(&mut buf).unwrap() {
            Some(Backend::DataRow(v)) => assert_eq!(v, [Some("hi".to_string()), None]),
            other => panic!("{other:?}"),
        }
        match parse(&mut buf).unwrap() {
            Some(Backend::Sasl(m)) => assert_eq!(m, ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"]),
            other => panic!("{other:?}"),
        }
        d.truncate(8);
        let mut buf = BytesMut::from(&frame(b'D', &d)[..]);
        assert!(parse(&mut buf).unwrap_err().contains("truncated"));
    }

    #[test]
    fn other_messages_fall_back_to_postgres_protocol() {
        let mut buf = BytesMut::from(&frame(b'Z', b"I")[..]);
        assert!(matches!(
            parse(&mut buf).unwrap(),
            Some(Backend::Other(Message::ReadyForQuery(_)))
        ));
        let mut buf = BytesMut::from(&frame(b'R', &[0, 0, 0, 0])[..]);
        assert!(matches!(
            parse(&mut buf).unwrap(),
            Some(Backend::Other(Message::AuthenticationOk))
        ));
    }
}
