//! Writes pgoutput messages as the server would, so tests and fake servers elsewhere in the crate
//! can build streams without a PostgreSQL. The bridge itself never sends these.

use super::message::{OldTuple, PgOutputMessage};
use super::tuple::write_tuple;

impl PgOutputMessage {
    /// The message in protocol version 1 wire format; [`super::decode_message`] reverses it.
    ///
    /// Counts beyond the wire's range (more than 65535 columns, say) are cut to fit.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            PgOutputMessage::Begin(b) => {
                out.push(b'B');
                put_u64(&mut out, b.final_lsn.0);
                put_i64(&mut out, b.commit_time);
                out.extend_from_slice(&b.xid.to_be_bytes());
            }
            PgOutputMessage::Commit(c) => {
                out.push(b'C');
                out.push(c.flags);
                put_u64(&mut out, c.commit_lsn.0);
                put_u64(&mut out, c.end_lsn.0);
                put_i64(&mut out, c.commit_time);
            }
            PgOutputMessage::Origin(o) => {
                out.push(b'O');
                put_u64(&mut out, o.commit_lsn.0);
                put_cstr(&mut out, &o.name);
            }
            PgOutputMessage::Relation(rel) => {
                out.push(b'R');
                out.extend_from_slice(&rel.oid.to_be_bytes());
                put_cstr(&mut out, &rel.namespace);
                put_cstr(&mut out, &rel.name);
                out.push(rel.replica_identity.as_byte());
                let count = u16::try_from(rel.columns.len()).unwrap_or(u16::MAX);
                out.extend_from_slice(&count.to_be_bytes());
                for col in rel.columns.iter().take(usize::from(count)) {
                    out.push(u8::from(col.is_key));
                    put_cstr(&mut out, &col.name);
                    out.extend_from_slice(&col.type_oid.to_be_bytes());
                    out.extend_from_slice(&col.type_modifier.to_be_bytes());
                }
            }
            PgOutputMessage::Type(t) => {
                out.push(b'Y');
                out.extend_from_slice(&t.oid.to_be_bytes());
                put_cstr(&mut out, &t.namespace);
                put_cstr(&mut out, &t.name);
            }
            PgOutputMessage::Insert(i) => {
                out.push(b'I');
                out.extend_from_slice(&i.relation_oid.to_be_bytes());
                out.push(b'N');
                write_tuple(&mut out, &i.new);
            }
            PgOutputMessage::Update(u) => {
                out.push(b'U');
                out.extend_from_slice(&u.relation_oid.to_be_bytes());
                if let Some(old) = &u.old {
                    put_old(&mut out, old);
                }
                out.push(b'N');
                write_tuple(&mut out, &u.new);
            }
            PgOutputMessage::Delete(d) => {
                out.push(b'D');
                out.extend_from_slice(&d.relation_oid.to_be_bytes());
                put_old(&mut out, &d.old);
            }
            PgOutputMessage::Truncate(t) => {
                out.push(b'T');
                let count = u32::try_from(t.relation_oids.len()).unwrap_or(u32::MAX);
                out.extend_from_slice(&count.to_be_bytes());
                out.push(u8::from(t.cascade) | (u8::from(t.restart_identity) << 1));
                for oid in &t.relation_oids {
                    out.extend_from_slice(&oid.to_be_bytes());
                }
            }
            PgOutputMessage::Message(m) => {
                out.push(b'M');
                out.push(u8::from(m.transactional));
                put_u64(&mut out, m.lsn.0);
                put_cstr(&mut out, &m.prefix);
                let len = i32::try_from(m.content.len()).unwrap_or(i32::MAX);
                out.extend_from_slice(&len.to_be_bytes());
                out.extend_from_slice(m.content.get(..len as usize).unwrap_or(&m.content));
            }
        }
        out
    }
}

fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_be_bytes());
}

fn put_i64(out: &mut Vec<u8>, v: i64) {
    out.extend_from_slice(&v.to_be_bytes());
}

/// Writes `s` NUL-terminated; an interior NUL would end the string early, as in C.
fn put_cstr(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    out.extend_from_slice(bytes.get(..end).unwrap_or(bytes));
    out.push(0);
}

fn put_old(out: &mut Vec<u8>, old: &OldTuple) {
    match old {
        OldTuple::Key(t) => {
            out.push(b'K');
            write_tuple(out, t);
        }
        OldTuple::Full(t) => {
            out.push(b'O');
            write_tuple(out, t);
        }
    }
}
