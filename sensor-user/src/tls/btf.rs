//! Field offsets of kernel structures from the kernel's own type information
//! (`/sys/kernel/btf/vmlinux`, readable by everyone), so the TLS programs can read a socket's
//! addresses and a process's id on this kernel, whatever its configuration, without tracefs
//! or compiled-in layouts. A minimal reader of the BTF format (linux/btf.h): only what
//! member lookups need, every read bounds-checked.

use thiserror::Error;

/// Why an offset could not be found.
#[derive(Debug, Error)]
pub enum BtfError {
    /// The data is not BTF, or is cut short.
    #[error("malformed BTF: {0}")]
    Malformed(&'static str),
    /// No struct of that name.
    #[error("no struct {0} in the kernel's BTF")]
    NoStruct(String),
    /// The struct has no such member (also inside its anonymous members).
    #[error("struct {0} has no member {1} in the kernel's BTF")]
    NoMember(String, String),
    /// The member is a bit field, which the programs do not read.
    #[error("{0}.{1} is a bit field")]
    BitField(String, String),
}

const MAGIC: u16 = 0xeb9f;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_TYPEDEF: u32 = 8;
const KIND_VOLATILE: u32 = 9;
const KIND_CONST: u32 = 10;
const KIND_RESTRICT: u32 = 11;
const KIND_TYPE_TAG: u32 = 18;

#[derive(Debug, Clone, Copy)]
struct Member {
    name_off: u32,
    type_id: u32,
    /// Bit offset (and, with the kind flag, bit field size in the top byte).
    offset: u32,
}

#[derive(Debug, Clone)]
struct Type {
    name_off: u32,
    kind: u32,
    kind_flag: bool,
    /// Referenced type of typedefs and modifiers.
    type_id: u32,
    members: Vec<Member>,
}

/// Parsed BTF: types by id (1-based) and the string section.
pub struct Btf {
    types: Vec<Type>,
    strings: Vec<u8>,
}

fn u32_at(b: &[u8], off: usize) -> Result<u32, BtfError> {
    let s = b
        .get(off..off + 4)
        .ok_or(BtfError::Malformed("truncated"))?;
    Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

impl Btf {
    /// Reads the running kernel's BTF.
    pub fn from_kernel() -> anyhow::Result<Btf> {
        let data = std::fs::read("/sys/kernel/btf/vmlinux").map_err(|e| {
            anyhow::anyhow!("`tls.enabled`: reading /sys/kernel/btf/vmlinux: {e} (a kernel with CONFIG_DEBUG_INFO_BTF is required)")
        })?;
        Ok(Btf::parse(&data)?)
    }

    /// Parses little-endian BTF (the only byte order this sensor runs on).
    pub fn parse(b: &[u8]) -> Result<Btf, BtfError> {
        if b.len() < 24 || u16::from_le_bytes([b[0], b[1]]) != MAGIC {
            return Err(BtfError::Malformed("no BTF magic"));
        }
        let hdr_len = u32_at(b, 4)? as usize;
        let type_off = u32_at(b, 8)? as usize;
        let type_len = u32_at(b, 12)? as usize;
        let str_off = u32_at(b, 16)? as usize;
        let str_len = u32_at(b, 20)? as usize;
        let section = |off: usize, len: usize| {
            let start = hdr_len.checked_add(off)?;
            b.get(start..start.checked_add(len)?)
        };
        let tb = section(type_off, type_len).ok_or(BtfError::Malformed("type section"))?;
        let strings = section(str_off, str_len)
            .ok_or(BtfError::Malformed("string section"))?
            .to_vec();
        let mut types = Vec::new();
        let mut p = 0usize;
        while p < tb.len() {
            let name_off = u32_at(tb, p)?;
            let info = u32_at(tb, p + 4)?;
            let size_or_type = u32_at(tb, p + 8)?;
            p += 12;
            let kind = (info >> 24) & 0x1f;
            let vlen = (info & 0xffff) as usize;
            let mut members = Vec::new();
            let extra = match kind {
                1 => 4,  // INT
                3 => 12, // ARRAY
                KIND_STRUCT | KIND_UNION => {
                    for i in 0..vlen {
                        let m = p + i * 12;
                        members.push(Member {
                            name_off: u32_at(tb, m)?,
                            type_id: u32_at(tb, m + 4)?,
                            offset: u32_at(tb, m + 8)?,
                        });
                    }
                    vlen * 12
                }
                6 => vlen * 8,   // ENUM
                13 => vlen * 8,  // FUNC_PROTO
                14 => 4,         // VAR
                15 => vlen * 12, // DATASEC
                17 => 4,         // DECL_TAG
                19 => vlen * 12, // ENUM64
                2 | 7 | 8 | 9 | 10 | 11 | 12 | 16 | 18 => 0,
                _ => return Err(BtfError::Malformed("unknown type kind")),
            };
            p += extra;
            if p > tb.len() {
                return Err(BtfError::Malformed("type runs past its section"));
            }
            types.push(Type {
                name_off,
                kind,
                kind_flag: info >> 31 == 1,
                type_id: size_or_type,
                members,
            });
        }
        Ok(Btf { types, strings })
    }

    fn name(&self, off: u32) -> &[u8] {
        let rest = self.strings.get(off as usize..).unwrap_or(&[]);
        let end = rest.iter().position(|c| *c == 0).unwrap_or(rest.len());
        &rest[..end]
    }

    fn by_id(&self, id: u32) -> Option<&Type> {
        self.types.get((id as usize).checked_sub(1)?)
    }

    /// Follows typedefs and qualifiers to the type they name.
    fn resolve(&self, mut id: u32) -> Option<&Type> {
        for _ in 0..32 {
            let t = self.by_id(id)?;
            match t.kind {
                KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_TYPE_TAG => {
                    id = t.type_id;
                }
                _ => return Some(t),
            }
        }
        None
    }

    /// Byte offset of `member` in struct `name`, looking through anonymous struct and union
    /// members as C does.
    pub fn offset(&self, name: &str, member: &str) -> Result<usize, BtfError> {
        let s = self
            .types
            .iter()
            .find(|t| t.kind == KIND_STRUCT && self.name(t.name_off) == name.as_bytes())
            .ok_or_else(|| BtfError::NoStruct(name.to_owned()))?;
        let bits = self
            .find(s, member.as_bytes(), 0)
            .ok_or_else(|| BtfError::NoMember(name.to_owned(), member.to_owned()))??;
        Ok(bits / 8)
    }

    /// Bit offset of `member` within `t` (plus `base`), or `Some(Err)` for a bit field.
    fn find(&self, t: &Type, member: &[u8], depth: usize) -> Option<Result<usize, BtfError>> {
        if depth > 8 {
            return None;
        }
        for m in &t.members {
            let (bit, size) = if t.kind_flag {
                ((m.offset & 0x00ff_ffff) as usize, m.offset >> 24)
            } else {
                (m.offset as usize, 0)
            };
            let name = self.name(m.name_off);
            if name == member {
                if size != 0 || bit % 8 != 0 {
                    return Some(Err(BtfError::BitField(
                        String::from_utf8_lossy(self.name(t.name_off)).into_owned(),
                        String::from_utf8_lossy(member).into_owned(),
                    )));
                }
                return Some(Ok(bit));
            }
            if name.is_empty()
                && let Some(inner) = self.resolve(m.type_id)
                && matches!(inner.kind, KIND_STRUCT | KIND_UNION)
                && let Some(found) = self.find(inner, member, depth + 1)
            {
                return Some(found.map(|b| b + bit));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hand-built BTF blob: `struct outer { int a; union { int b; struct { int c; int d; }; }; }`
    /// with a bit field `e`.
    fn blob() -> Vec<u8> {
        let strings = b"\0int\0outer\0a\0b\0c\0d\0e\0bits\0".to_vec();
        let off = |s: &str| -> u32 {
            let needle = format!("\0{s}\0");
            strings
                .windows(needle.len())
                .position(|w| w == needle.as_bytes())
                .unwrap() as u32
                + 1
        };
        let mut t = Vec::new();
        let ty = |t: &mut Vec<u8>, name: u32, info: u32, st: u32| {
            t.extend_from_slice(&name.to_le_bytes());
            t.extend_from_slice(&info.to_le_bytes());
            t.extend_from_slice(&st.to_le_bytes());
        };
        let mem = |t: &mut Vec<u8>, name: u32, id: u32, bits: u32| {
            t.extend_from_slice(&name.to_le_bytes());
            t.extend_from_slice(&id.to_le_bytes());
            t.extend_from_slice(&bits.to_le_bytes());
        };
        // 1: int
        ty(&mut t, off("int"), 1 << 24, 4);
        t.extend_from_slice(&32u32.to_le_bytes());
        // 2: anonymous struct { c; d; }
        ty(&mut t, 0, (4 << 24) | 2, 8);
        mem(&mut t, off("c"), 1, 0);
        mem(&mut t, off("d"), 1, 32);
        // 3: anonymous union { b; struct 2; }
        ty(&mut t, 0, (5 << 24) | 2, 8);
        mem(&mut t, off("b"), 1, 0);
        mem(&mut t, 0, 2, 0);
        // 4: struct outer { a; union 3; }
        ty(&mut t, off("outer"), (4 << 24) | 2, 12);
        mem(&mut t, off("a"), 1, 0);
        mem(&mut t, 0, 3, 32);
        // 5: struct bits { e: 3 } (kind flag: bit field size 3 at bit 0)
        ty(&mut t, off("bits"), (1 << 31) | (4 << 24) | 1, 4);
        mem(&mut t, off("e"), 1, 3 << 24);
        let mut b = Vec::new();
        b.extend_from_slice(&MAGIC.to_le_bytes());
        b.extend_from_slice(&[1, 0]);
        for v in [
            24u32,
            0,
            t.len() as u32,
            t.len() as u32,
            strings.len() as u32,
        ] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        b.extend_from_slice(&t);
        b.extend_from_slice(&strings);
        b
    }

    #[test]
    fn members_are_found_through_anonymous_members() {
        let btf = Btf::parse(&blob()).unwrap();
        assert_eq!(btf.offset("outer", "a").unwrap(), 0);
        assert_eq!(btf.offset("outer", "b").unwrap(), 4);
        assert_eq!(btf.offset("outer", "c").unwrap(), 4);
        assert_eq!(btf.offset("outer", "d").unwrap(), 8);
        assert!(matches!(
            btf.offset("outer", "z"),
            Err(BtfError::NoMember(..))
        ));
        assert!(matches!(
            btf.offset("nope", "a"),
            Err(BtfError::NoStruct(_))
        ));
        assert!(matches!(
            btf.offset("bits", "e"),
            Err(BtfError::BitField(..))
        ));
    }

    #[test]
    fn truncated_or_foreign_data_is_refused() {
        let b = blob();
        assert!(Btf::parse(&b[..30]).is_err());
        assert!(Btf::parse(b"not btf at all, not at all").is_err());
        let mut bad = b.clone();
        bad[12] = 0xff; // type section length past the end
        assert!(Btf::parse(&bad).is_err());
    }

    /// The running kernel's layout, which `sock_common` has had since Linux 2.6 for its first
    /// fields (skipped without BTF).
    #[test]
    fn this_kernels_socket_layout() {
        let Ok(btf) = Btf::from_kernel() else {
            return crate::attribution::skip("no /sys/kernel/btf/vmlinux");
        };
        assert_eq!(btf.offset("sock_common", "skc_daddr").unwrap(), 0);
        assert_eq!(btf.offset("sock_common", "skc_rcv_saddr").unwrap(), 4);
        assert_eq!(btf.offset("sock_common", "skc_dport").unwrap(), 12);
        assert_eq!(btf.offset("sock_common", "skc_num").unwrap(), 14);
        assert_eq!(btf.offset("sock_common", "skc_family").unwrap(), 16);
        assert!(btf.offset("sock_common", "skc_v6_daddr").unwrap() >= 18);
        assert!(btf.offset("task_struct", "tgid").unwrap() > 0);
        assert!(btf.offset("linux_binprm", "filename").unwrap() > 0);
        assert!(btf.offset("sock", "sk_protocol").unwrap() > 0);
    }
}
