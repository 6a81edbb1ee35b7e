//! Log output. The daemon writes one JSON object per line on stdout (the journal keeps it when
//! run as a service); every other verb writes plain lines on stderr. Whatever a log line says, it
//! passes [`mask_text`] on its way out, so an identity or phone number never reaches a log in
//! clear, even from a message that quotes a department's answer.

use std::io::{self, Write};

use tracing_subscriber::EnvFilter;

use crate::model::mask::mask_text;

/// A writer that masks each formatted event before writing it.
pub struct Masked<W: Write>(pub W);

impl<W: Write> Write for Masked<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // The formatter hands over one whole event per call.
        match std::str::from_utf8(buf) {
            Ok(text) => self.0.write_all(mask_text(text).as_bytes())?,
            Err(_) => self.0.write_all(buf)?,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

/// Installs the subscriber: JSON on stdout for the daemon, text on stderr otherwise; `RUST_LOG`
/// filters (default `level`).
pub fn init(daemon: bool, level: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| level.into());
    if daemon {
        tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_env_filter(filter)
            .with_writer(|| Masked(io::stdout()))
            .init();
    } else {
        tracing_subscriber::fmt()
            .with_writer(|| Masked(io::stderr()))
            .with_env_filter(filter)
            .init();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_line_is_masked_on_its_way_out() {
        let mut out = Vec::new();
        {
            let mut w = Masked(&mut out);
            w.write_all(br#"{"error":"mother 410225199506120022 phone 13800000000"}"#)
                .unwrap();
        }
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            r#"{"error":"mother 4102**********0022 phone 138****0000"}"#
        );
    }
}
