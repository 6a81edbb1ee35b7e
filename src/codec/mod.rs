//! Wire formats: rendered documents to bytes (JSON, XML, SOAP 1.1, forms, in UTF-8, GB18030 or GBK)
//! and answers from bytes back to values that mapping expressions can read. Codecs know nothing of
//! departments, retries or state.

pub mod charset;
pub mod form;
pub mod json;
pub mod xml;
