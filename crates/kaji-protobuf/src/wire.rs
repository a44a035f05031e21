//! Protobuf wire primitives: varints, keys, length-delimited reads and writes.

/// Wire type of a varint (`int32`, `int64`, `bool`, enums).
pub(crate) const VARINT: u8 = 0;
/// Wire type of a fixed 64-bit value (`double`).
pub(crate) const FIXED64: u8 = 1;
/// Wire type of a length-delimited value (strings, bytes, messages, packed arrays).
pub(crate) const LEN: u8 = 2;
/// Wire type of a fixed 32-bit value (`float`, unused by Kubernetes).
pub(crate) const FIXED32: u8 = 5;

/// A value read off the wire, not yet interpreted.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Raw<'a> {
    /// Wire type 0.
    Varint(u64),
    /// Wire type 1.
    Fixed64(u64),
    /// Wire type 2.
    Len(&'a [u8]),
    /// Wire type 5 (its value is skipped: no Kubernetes field uses it).
    Fixed32,
}

impl Raw<'_> {
    /// The wire type's name, for error messages.
    pub(crate) fn wire_name(&self) -> &'static str {
        match self {
            Raw::Varint(_) => "varint",
            Raw::Fixed64(_) => "fixed64",
            Raw::Len(_) => "length-delimited",
            Raw::Fixed32 => "fixed32",
        }
    }
}

/// Reads `(tag, value)` pairs from a message body.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }

    /// The next field, `None` at the end of the message.
    ///
    /// # Errors
    /// A description of the damage when the bytes are not a protobuf message.
    pub(crate) fn next_field(&mut self) -> Result<Option<(u32, Raw<'a>)>, String> {
        if self.buf.is_empty() {
            return Ok(None);
        }
        let key = self.varint()?;
        let tag =
            u32::try_from(key >> 3).map_err(|_| format!("field number {} too large", key >> 3))?;
        if tag == 0 {
            return Err("field number 0".to_string());
        }
        let value = match (key & 7) as u8 {
            VARINT => Raw::Varint(self.varint()?),
            FIXED64 => Raw::Fixed64(u64::from_le_bytes(
                self.take(8)?.try_into().expect("8 bytes"),
            )),
            LEN => {
                let len = self.varint()?;
                let len = usize::try_from(len).map_err(|_| format!("length {len} too large"))?;
                Raw::Len(self.take(len)?)
            }
            FIXED32 => {
                self.take(4)?;
                Raw::Fixed32
            }
            other => return Err(format!("unsupported wire type {other} for field {tag}")),
        };
        Ok(Some((tag, value)))
    }

    /// Reads one varint.
    pub(crate) fn varint(&mut self) -> Result<u64, String> {
        let mut value = 0u64;
        for i in 0..10 {
            let Some((&b, rest)) = self.buf.split_first() else {
                return Err("truncated varint".to_string());
            };
            self.buf = rest;
            value |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err("varint longer than 10 bytes".to_string())
    }

    /// Whether every byte has been read.
    pub(crate) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.buf.len() < n {
            return Err(format!(
                "truncated: need {n} bytes, {} left",
                self.buf.len()
            ));
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }
}

/// Appends a varint.
pub(crate) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Appends a field key.
pub(crate) fn put_key(out: &mut Vec<u8>, tag: u32, wire: u8) {
    put_varint(out, (u64::from(tag) << 3) | u64::from(wire));
}

/// Appends a length-delimited field.
pub(crate) fn put_len(out: &mut Vec<u8>, tag: u32, bytes: &[u8]) {
    put_key(out, tag, LEN);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// Appends a varint field (negative numbers take ten bytes, as in Go).
pub(crate) fn put_varint_field(out: &mut Vec<u8>, tag: u32, v: i64) {
    put_key(out, tag, VARINT);
    put_varint(out, v as u64);
}

/// Appends a `double` field.
pub(crate) fn put_double_field(out: &mut Vec<u8>, tag: u32, v: f64) {
    put_key(out, tag, FIXED64);
    out.extend_from_slice(&v.to_bits().to_le_bytes());
}
