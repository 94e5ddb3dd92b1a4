//! The JSON wire format of ops: `Serialize` for [`Op`], lenient `Deserialize` for [`RawOp`].
//!
//! Wire array: retain `n` is `n`, delete `n` is `-n`, insert `s` is `"s"`; a trailing retain is
//! omitted. The identity op on a non-empty document serializes as `[len]`; the identity op on
//! an empty document serializes as `[]`, which is not a valid wire op: callers must not
//! broadcast no-ops (check [`Op::is_noop`]).

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::ser::{Error as _, Serialize, SerializeSeq, Serializer};

use super::op::{Component, Op, OpError, RawComponent, RawComponents, RawOp};

impl Serialize for Op {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let wire = self.wire_components();
        if wire.is_empty() {
            // The identity op: `[len]` on a non-empty document, `[]` on an empty one.
            let mut seq = serializer.serialize_seq(Some(usize::from(self.base_len > 0)))?;
            if self.base_len > 0 {
                seq.serialize_element(&(self.base_len as u64))?;
            }
            return seq.end();
        }
        let mut seq = serializer.serialize_seq(Some(wire.len()))?;
        for component in wire {
            match component {
                Component::Retain(n) => seq.serialize_element(&(*n as u64))?,
                Component::Delete(n) => {
                    let n = i64::try_from(*n)
                        .map_err(|_| S::Error::custom("delete longer than i64::MAX"))?;
                    seq.serialize_element(&-n)?;
                }
                Component::Insert(text) => seq.serialize_element(text.as_str())?,
            }
        }
        seq.end()
    }
}

impl<'de> Deserialize<'de> for RawOp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<RawOp, D::Error> {
        deserializer.deserialize_seq(RawOpVisitor)
    }
}

/// Accepts only an array; each element through [`RawComponent`]'s lenient decoding.
struct RawOpVisitor;

impl<'de> Visitor<'de> for RawOpVisitor {
    type Value = RawOp;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("an array of op components")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RawOp, A::Error> {
        // The size hint comes from the input; cap it so a lying hint cannot reserve much.
        let mut components = RawComponents::new();
        components.reserve(seq.size_hint().unwrap_or(0).min(64));
        while let Some(component) = seq.next_element::<RawComponent>()? {
            components.push(component);
        }
        Ok(RawOp(components))
    }
}

impl<'de> Deserialize<'de> for RawComponent {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<RawComponent, D::Error> {
        deserializer.deserialize_any(RawComponentVisitor)
    }
}

/// Accepts any value: integers and strings as components, everything else as `Invalid`.
struct RawComponentVisitor;

impl<'de> Visitor<'de> for RawComponentVisitor {
    type Value = RawComponent;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("an op component (an integer or a string)")
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<RawComponent, E> {
        Ok(if value < 0 {
            RawComponent::Delete(value.unsigned_abs())
        } else {
            RawComponent::Retain(value.unsigned_abs())
        })
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<RawComponent, E> {
        Ok(RawComponent::Retain(value))
    }

    fn visit_i128<E: de::Error>(self, value: i128) -> Result<RawComponent, E> {
        let magnitude = u64::try_from(value.unsigned_abs());
        Ok(match magnitude {
            Ok(n) if value < 0 => RawComponent::Delete(n),
            Ok(n) => RawComponent::Retain(n),
            Err(_) => RawComponent::Invalid(OpError::TooLong),
        })
    }

    fn visit_u128<E: de::Error>(self, value: u128) -> Result<RawComponent, E> {
        Ok(u64::try_from(value).map_or(
            RawComponent::Invalid(OpError::TooLong),
            RawComponent::Retain,
        ))
    }

    fn visit_f64<E: de::Error>(self, _value: f64) -> Result<RawComponent, E> {
        // serde_json hands over every number with a fraction or exponent (and every integer
        // beyond 64 bits) as f64: none is a valid component, whatever its value.
        Ok(RawComponent::Invalid(OpError::NotAnInteger))
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<RawComponent, E> {
        Ok(RawComponent::Insert(value.into()))
    }

    fn visit_string<E: de::Error>(self, value: String) -> Result<RawComponent, E> {
        Ok(RawComponent::Insert(value.into()))
    }

    fn visit_bool<E: de::Error>(self, _value: bool) -> Result<RawComponent, E> {
        Ok(RawComponent::Invalid(OpError::NotAnInteger))
    }

    fn visit_unit<E: de::Error>(self) -> Result<RawComponent, E> {
        Ok(RawComponent::Invalid(OpError::NotAnInteger))
    }

    fn visit_none<E: de::Error>(self) -> Result<RawComponent, E> {
        Ok(RawComponent::Invalid(OpError::NotAnInteger))
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<RawComponent, D::Error> {
        deserializer.deserialize_any(RawComponentVisitor)
    }

    fn visit_bytes<E: de::Error>(self, _value: &[u8]) -> Result<RawComponent, E> {
        Ok(RawComponent::Invalid(OpError::NotAnInteger))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RawComponent, A::Error> {
        // Skip the nested array without keeping any of it.
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(RawComponent::Invalid(OpError::NotAnInteger))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawComponent, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(RawComponent::Invalid(OpError::NotAnInteger))
    }
}
