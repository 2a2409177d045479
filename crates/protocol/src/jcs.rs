//! RFC 8785 JSON Canonicalization Scheme (JCS).
//!
//! Receipts are signed over canonical bytes, so that anyone can re-derive the
//! exact text from the parsed JSON and two implementations agree on it.

use std::fmt::Write as _;

use serde_json::Value;

/// The RFC 8785 canonical form of `value`.
///
/// Numbers are written as ECMAScript `Number.prototype.toString` writes the
/// IEEE 754 double nearest to them (RFC 8785 §3.2.2.3): integers beyond 2^53
/// lose precision exactly as they would in any JCS implementation, which is
/// why the request contract bounds every number to ±(2^53 − 1).
#[must_use]
pub fn canonical(value: &Value) -> String {
    let mut out = String::new();
    write_value(&mut out, value);
    out
}

/// Writes an object, members sorted.
fn write_object(out: &mut String, map: &serde_json::Map<String, Value>) {
    // RFC 8785 §3.2.3: members sorted by their names as UTF-16 code units.
    let mut members: Vec<(&String, &Value)> = map.iter().collect();
    members.sort_by(|(a, _), (b, _)| {
        // UTF-16 order is byte order for ASCII, which nearly every name is.
        if a.is_ascii() && b.is_ascii() {
            a.as_bytes().cmp(b.as_bytes())
        } else {
            a.encode_utf16().cmp(b.encode_utf16())
        }
    });
    out.push('{');
    for (i, (k, v)) in members.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_string(out, k);
        out.push(':');
        write_value(out, v);
    }
    out.push('}');
}

pub(crate) fn write_value(out: &mut String, value: &Value) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => {
            // RFC 8785 §3.2.2.3: serialize as the ES6 Number type does.
            let f = n.as_f64().expect("serde_json numbers are finite");
            out.push_str(ryu_js::Buffer::new().format_finite(f));
        }
        Value::String(s) => write_string(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(out, item);
            }
            out.push(']');
        }
        Value::Object(map) => write_object(out, map),
    }
}

/// RFC 8785 §3.2.2.2: the ES6 JSON.stringify string form: `"` and `\`
/// escaped, the short escapes for \b \t \n \f \r, other controls as
/// lowercase `\u00xx`, everything else literal.
pub(crate) fn write_string(out: &mut String, s: &str) {
    out.push('"');
    // Copy runs of bytes that need no escape in one go. Bytes below 0x80 never
    // occur inside a multi-byte UTF-8 sequence, so splitting at them keeps
    // every run valid UTF-8.
    let mut run = 0;
    for (i, b) in s.bytes().enumerate() {
        let escape = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            0x08 => "\\b",
            b'\t' => "\\t",
            b'\n' => "\\n",
            0x0c => "\\f",
            b'\r' => "\\r",
            0x00..=0x1f => "",
            _ => continue,
        };
        out.push_str(&s[run..i]);
        if escape.is_empty() {
            let _ = write!(out, "\\u{b:04x}");
        } else {
            out.push_str(escape);
        }
        run = i + 1;
    }
    out.push_str(&s[run..]);
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::canonical;
    use serde_json::json;

    #[test]
    fn rfc8785_appendix_b_numbers() {
        // RFC 8785 Appendix B: IEEE 754 value → canonical text.
        for (bits, want) in [
            (0x0000_0000_0000_0000_u64, "0"),
            (0x8000_0000_0000_0000, "0"),
            (0x0000_0000_0000_0001, "5e-324"),
            (0x8000_0000_0000_0001, "-5e-324"),
            (0x7fef_ffff_ffff_ffff, "1.7976931348623157e+308"),
            (0x4340_0000_0000_0000, "9007199254740992"),
            (0x4430_0000_0000_0000, "295147905179352830000"),
            (0x44b5_2d02_c7e1_4af6, "1e+23"),
            (0x3eb0_c6f7_a0b5_ed8d, "0.000001"),
            (0x3eb0_c6f7_a0b5_ed8c, "9.999999999999997e-7"),
            (0x4415_af1d_78b5_8c3f, "99999999999999980000"),
            (0x4415_af1d_78b5_8c40, "100000000000000000000"),
            (0x444b_1ae4_d6e2_ef50, "1e+21"),
        ] {
            let v = serde_json::Value::from(f64::from_bits(bits));
            assert_eq!(canonical(&v), want, "{bits:#x}");
        }
    }

    #[test]
    fn rfc8785_section_3_2_3_sorting() {
        // RFC 8785 §3.2.3 example: keys sorted by UTF-16 code units.
        let v = json!({
            "\u{20ac}": "Euro Sign",
            "\r": "Carriage Return",
            "\u{fb33}": "Hebrew Letter Dalet With Dagesh",
            "1": "One",
            "\u{1f600}": "Emoji: Grinning Face",
            "\u{80}": "Control",
            "\u{f6}": "Latin Small Letter O With Diaeresis"
        });
        let want = "{\"\\r\":\"Carriage Return\",\"1\":\"One\",\"\u{80}\":\"Control\",\
                    \"\u{f6}\":\"Latin Small Letter O With Diaeresis\",\"\u{20ac}\":\"Euro Sign\",\
                    \"\u{1f600}\":\"Emoji: Grinning Face\",\"\u{fb33}\":\"Hebrew Letter Dalet With Dagesh\"}";
        assert_eq!(canonical(&v), want);
    }

    #[test]
    fn rfc8785_section_3_2_2_example() {
        let v: serde_json::Value = serde_json::from_str(
            r#"{"numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
                "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
                "literals": [null, true, false]}"#,
        )
        .unwrap();
        let want = r#"{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"€$\u000f\nA'B\"\\\\\"/"}"#;
        assert_eq!(canonical(&v), want);
    }

    proptest::proptest! {
        #[test]
        fn strings_round_trip_and_carry_no_raw_controls(s in "(\\PC|[\u{0}-\u{1f}\"\\\\\u{7f}\u{2028}])*") {
            let text = canonical(&serde_json::Value::String(s.clone()));
            proptest::prop_assert!(!text.bytes().any(|b| b < 0x20));
            proptest::prop_assert_eq!(serde_json::from_str::<String>(&text).unwrap(), s);
        }
    }

    #[test]
    fn canonical_is_a_fixed_point() {
        let v = json!({"b": [1, 2.5, {"z": null, "a": "x\u{1}y"}], "a": -0.0});
        let once = canonical(&v);
        let again = canonical(&serde_json::from_str(&once).unwrap());
        assert_eq!(once, again);
    }
}
