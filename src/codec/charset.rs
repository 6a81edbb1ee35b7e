//! Character sets. XML may carry any character as a numeric character reference, so characters that
//! the charset cannot encode become `&#NNNN;` there; in any other format they are an error.

use encoding_rs::{Encoding, GB18030, GBK, UTF_8};

use crate::config::department::Charset;

impl Charset {
    pub fn label(self) -> &'static str {
        match self {
            Charset::Utf8 => "UTF-8",
            Charset::Gb18030 => "GB18030",
            Charset::Gbk => "GBK",
        }
    }

    fn encoding(self) -> &'static Encoding {
        match self {
            Charset::Utf8 => UTF_8,
            Charset::Gb18030 => GB18030,
            Charset::Gbk => GBK,
        }
    }

    /// Encodes XML text: unencodable characters become numeric character references.
    pub fn encode_xml(self, text: &str) -> Vec<u8> {
        match self {
            Charset::Utf8 => text.as_bytes().to_vec(),
            _ => {
                let (bytes, _, _) = self.encoding().encode(text);
                bytes.into_owned()
            }
        }
    }

    /// Encodes non-XML text: an unencodable character is an error naming it.
    pub fn encode_strict(self, text: &str) -> Result<Vec<u8>, String> {
        if self == Charset::Utf8 {
            return Ok(text.as_bytes().to_vec());
        }
        let enc = self.encoding();
        for ch in text.chars() {
            let mut buf = [0u8; 4];
            let (_, _, unmappable) = enc.encode(ch.encode_utf8(&mut buf));
            if unmappable {
                return Err(format!(
                    "character `{ch}` (U+{:04X}) cannot be written in {}",
                    ch as u32,
                    self.label()
                ));
            }
        }
        Ok(enc.encode(text).0.into_owned())
    }

    pub fn decode(self, bytes: &[u8]) -> Result<String, String> {
        let (text, _, had_errors) = self.encoding().decode(bytes);
        if had_errors {
            return Err(format!("answer is not valid {}", self.label()));
        }
        Ok(text.into_owned())
    }

    /// The charset named by a label (`gb2312` and `gbk` read as GBK, which is a superset).
    pub fn from_label(label: &str) -> Option<Charset> {
        match label.trim().trim_matches('"').to_ascii_uppercase().as_str() {
            "UTF-8" | "UTF8" => Some(Charset::Utf8),
            "GB18030" => Some(Charset::Gb18030),
            "GBK" | "GB2312" | "CP936" => Some(Charset::Gbk),
            _ => None,
        }
    }
}

/// Decodes a body whose charset is named by the HTTP content type or an XML prolog; UTF-8 otherwise.
pub fn decode_body(bytes: &[u8], content_type: Option<&str>) -> Result<String, String> {
    let from_header = content_type.and_then(|ct| {
        ct.split(';')
            .filter_map(|p| p.trim().strip_prefix("charset="))
            .find_map(Charset::from_label)
    });
    let from_prolog = || {
        let head = &bytes[..bytes.len().min(200)];
        let head = String::from_utf8_lossy(head);
        let decl = head.strip_prefix("<?xml")?;
        let decl = &decl[..decl.find("?>")?];
        let i = decl.find("encoding")?;
        let rest = decl[i + 8..].trim_start().strip_prefix('=')?.trim_start();
        let q = rest.chars().next()?;
        let rest = &rest[1..];
        Charset::from_label(&rest[..rest.find(q)?])
    };
    from_header
        .or_else(from_prolog)
        .unwrap_or(Charset::Utf8)
        .decode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gbk_xml_writes_astral_characters_as_references() {
        let bytes = Charset::Gbk.encode_xml("陈𠈌");
        let text = String::from_utf8_lossy(&bytes[2..]).into_owned();
        assert_eq!(text, "&#131596;");
        assert_eq!(GBK.decode(&bytes).0, "陈&#131596;");
    }

    #[test]
    fn gb18030_encodes_everything() {
        let bytes = Charset::Gb18030.encode_strict("陈𠈌").unwrap();
        assert_eq!(Charset::Gb18030.decode(&bytes).unwrap(), "陈𠈌");
    }

    #[test]
    fn non_xml_formats_refuse_unencodable_characters() {
        let err = Charset::Gbk.encode_strict("陈𠈌").unwrap_err();
        assert!(err.contains("U+2020C"), "{err}");
    }

    #[test]
    fn charset_comes_from_header_then_prolog() {
        let body =
            Charset::Gb18030.encode_xml("<?xml version=\"1.0\" encoding=\"GB18030\"?><a>户口</a>");
        assert!(decode_body(&body, None).unwrap().contains("户口"));
        assert!(
            decode_body(&body, Some("text/xml; charset=GB18030"))
                .unwrap()
                .contains("户口")
        );
        assert!(decode_body(&body, Some("text/xml; charset=UTF-8")).is_err());
    }
}
