//! Streaming the elements of a top-level JSON array one at a time.
//!
//! Memory: the reader's buffer plus one element as a `serde_json::Value` (a record of
//! LLaVA-Instruct is a few KiB), never the whole file nor a second copy of it; a 1 GB
//! annotation file is read in constant memory.

use std::cell::Cell;
use std::fmt;
use std::io::Read;

use serde::de::{self, Deserializer as _, SeqAccess, Visitor};
use serde_json::Value;

/// Why streaming stopped early.
pub(crate) enum StreamError<E> {
    /// The JSON text is broken (or not an array) at element `record`.
    Json {
        record: usize,
        source: serde_json::Error,
    },
    /// The callback returned an error for element `record`.
    Callback(E),
}

/// Calls `f(index, element)` for each element of the JSON array that `reader` holds, in order.
/// Whitespace may follow the array; anything else after it is an error.
pub(crate) fn for_each_element<R, E, F>(reader: R, mut f: F) -> Result<usize, StreamError<E>>
where
    R: Read,
    F: FnMut(usize, Value) -> Result<(), E>,
{
    let next = Cell::new(0usize);
    let mut stopped = None;
    let mut de = serde_json::Deserializer::from_reader(reader);
    let visitor = Elements {
        f: &mut f,
        next: &next,
        stopped: &mut stopped,
    };
    let result = de
        .deserialize_seq(visitor)
        .and_then(|n| de.end().map(|()| n));
    match (result, stopped) {
        (_, Some(err)) => Err(StreamError::Callback(err)),
        (Ok(n), None) => Ok(n),
        (Err(source), None) => Err(StreamError::Json {
            record: next.get(),
            source,
        }),
    }
}

/// The serde visitor that hands each array element to the callback as soon as it is parsed.
struct Elements<'a, F, E> {
    f: &'a mut F,
    next: &'a Cell<usize>,
    stopped: &'a mut Option<E>,
}

impl<'de, F, E> Visitor<'de> for Elements<'_, F, E>
where
    F: FnMut(usize, Value) -> Result<(), E>,
{
    type Value = usize;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON array of records")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<usize, A::Error> {
        while let Some(element) = seq.next_element::<Value>()? {
            let index = self.next.get();
            if let Err(err) = (self.f)(index, element) {
                *self.stopped = Some(err);
                return Err(de::Error::custom("stopped by the record handler"));
            }
            self.next.set(index + 1);
        }
        Ok(self.next.get())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(text: &str) -> Result<Vec<Value>, String> {
        let mut out = Vec::new();
        for_each_element(text.as_bytes(), |_, v| {
            out.push(v);
            Ok::<(), ()>(())
        })
        .map_err(|e| match e {
            StreamError::Json { record, source } => format!("{record}: {source}"),
            StreamError::Callback(()) => "callback".into(),
        })?;
        Ok(out)
    }

    #[test]
    fn streams_elements_in_order() {
        let v = collect(" [ {\"a\": 1}, 2, \"x\", [3] ] \n").unwrap();
        assert_eq!(v.len(), 4);
        assert_eq!(v[1], Value::from(2));
        assert_eq!(collect("[]").unwrap().len(), 0);
    }

    #[test]
    fn reports_the_element_where_the_json_breaks() {
        let err = collect("[{\"a\": 1}, {\"b\": }]").unwrap_err();
        assert!(err.starts_with("1: "), "{err}");
        let err = collect("{\"a\": 1}").unwrap_err();
        assert!(err.starts_with("0: "), "{err}");
        let err = collect("[1] x").unwrap_err();
        assert!(err.starts_with("1: "), "{err}");
    }

    #[test]
    fn callback_errors_stop_the_stream() {
        let mut seen = 0;
        let r = for_each_element("[1, 2, 3]".as_bytes(), |i, _| {
            seen += 1;
            if i == 1 {
                Err("stop")
            } else {
                Ok(())
            }
        });
        assert!(matches!(r, Err(StreamError::Callback("stop"))));
        assert_eq!(seen, 2);
    }
}
