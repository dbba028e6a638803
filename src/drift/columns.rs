//! The columns drift watches, described as numbers in the encoded model
//! row rather than as model inputs.
//!
//! Drift sees numbers, not models: whoever owns the model (`app`) turns its
//! inputs into a [`Watched`] list, and everything in `drift` (profiles,
//! plans, windows) works from that list alone.
//!
//! Guarantees: a [`Watched`] list is in row order and its slots do not
//! overlap when built with the constructors in order (each column starts
//! where the previous one ended); [`Watched::push`] keeps that true.

pub use super::significance::ValueSource;

/// What kind of values a watched column holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ColumnKind {
    /// Any real number.
    Numeric,
    /// One of a vocabulary of texts.
    Categorical,
    /// `false`/`true`, encoded as 0.0/1.0; sketched as the two categories.
    Boolean,
}

impl ColumnKind {
    /// The sketch a profile keeps for it: `numeric` or `categorical`.
    pub fn sketch_kind(self) -> &'static str {
        match self {
            ColumnKind::Numeric => "numeric",
            ColumnKind::Categorical | ColumnKind::Boolean => "categorical",
        }
    }
}

/// Where a column's value sits in the encoded row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Slot {
    /// One float: a number, or a boolean as 0.0/1.0.
    Value { offset: usize },
    /// `vocabulary.len()` floats, 1.0 at the value's position; no hot slot
    /// is a value outside the vocabulary.
    OneHot {
        offset: usize,
        vocabulary: Vec<String>,
    },
    /// One float: the value's position in `vocabulary`; anything that is
    /// not a position (the unknown code -1) is a value outside it.
    Ordinal {
        offset: usize,
        vocabulary: Vec<String>,
    },
}

impl Slot {
    /// The first float of the slot.
    pub fn offset(&self) -> usize {
        match self {
            Slot::Value { offset } | Slot::OneHot { offset, .. } | Slot::Ordinal { offset, .. } => {
                *offset
            }
        }
    }

    /// Floats the slot takes in the row.
    pub fn width(&self) -> usize {
        match self {
            Slot::OneHot { vocabulary, .. } => vocabulary.len(),
            Slot::Value { .. } | Slot::Ordinal { .. } => 1,
        }
    }
}

/// One watched column: its name (a model input's), its kind, its slot, and
/// where its value comes from (which decides how many independent draws a
/// window of it holds: [`crate::drift::significance::effective_n`]).
///
/// Non-exhaustive so that what the plan learns about a column can grow
/// without breaking the code that builds one through [`Watched::push`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct WatchedColumn {
    pub name: String,
    pub kind: ColumnKind,
    pub slot: Slot,
    pub source: ValueSource,
    /// Event time a streaming aggregate needs to cover its window (its
    /// window length; 0 for other sources): until the stream has run that
    /// long its values are cold, not drifted.
    pub history_ms: i64,
}

/// How a column is encoded, for [`Watched::push`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Encoding {
    /// A number, or a boolean (0.0/1.0): one float.
    Value,
    /// One float per vocabulary entry.
    OneHot(Vec<String>),
    /// One float, the position in the vocabulary.
    Ordinal(Vec<String>),
}

/// The columns a model's drift is watched on, in row order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watched {
    /// Model name, for messages and alerts.
    pub model: String,
    /// Model version, for messages and alerts.
    pub version: String,
    columns: Vec<WatchedColumn>,
    /// Floats of the row taken so far.
    width: usize,
}

impl Watched {
    /// No columns yet.
    pub fn new(model: impl Into<String>, version: impl Into<String>) -> Self {
        Watched {
            model: model.into(),
            version: version.into(),
            columns: Vec::new(),
            width: 0,
        }
    }

    /// Appends a column that comes with the event, its slot starting where
    /// the previous one ended.
    pub fn push(&mut self, name: impl Into<String>, kind: ColumnKind, encoding: Encoding) {
        self.push_from(name, kind, encoding, ValueSource::Event);
    }

    /// Appends a column whose value comes from `source`.
    pub fn push_from(
        &mut self,
        name: impl Into<String>,
        kind: ColumnKind,
        encoding: Encoding,
        source: ValueSource,
    ) {
        let offset = self.width;
        let slot = match encoding {
            Encoding::Value => Slot::Value { offset },
            Encoding::OneHot(vocabulary) => Slot::OneHot { offset, vocabulary },
            Encoding::Ordinal(vocabulary) => Slot::Ordinal { offset, vocabulary },
        };
        self.width += slot.width();
        self.columns.push(WatchedColumn {
            name: name.into(),
            kind,
            slot,
            source,
            history_ms: 0,
        });
    }

    /// The columns, in row order.
    pub fn columns(&self) -> &[WatchedColumn] {
        &self.columns
    }

    /// Floats of the encoded row the columns take.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Appends a streaming aggregate over a window of `history_ms`.
    pub fn push_aggregate(
        &mut self,
        name: impl Into<String>,
        kind: ColumnKind,
        encoding: Encoding,
        history_ms: i64,
    ) {
        self.push_from(name, kind, encoding, ValueSource::Aggregate);
        if let Some(c) = self.columns.last_mut() {
            c.history_ms = history_ms.max(0);
        }
    }

    /// Whether any column's value comes per entity (store or aggregate):
    /// then windows count the entities behind their events.
    pub fn per_entity(&self) -> bool {
        self.columns.iter().any(|c| c.source != ValueSource::Event)
    }

    /// `model/version`, as messages name the model.
    pub fn label(&self) -> String {
        format!("{}/{}", self.model, self.version)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_follow_each_other_in_row_order() {
        let mut w = Watched::new("toy", "7");
        w.push("amount", ColumnKind::Numeric, Encoding::Value);
        w.push(
            "channel",
            ColumnKind::Categorical,
            Encoding::OneHot(vec!["a".into(), "b".into(), "c".into()]),
        );
        w.push("intl", ColumnKind::Boolean, Encoding::Value);
        w.push(
            "tier",
            ColumnKind::Categorical,
            Encoding::Ordinal(vec!["x".into(), "y".into()]),
        );
        let offsets: Vec<(usize, usize)> = w
            .columns()
            .iter()
            .map(|c| (c.slot.offset(), c.slot.width()))
            .collect();
        assert_eq!(offsets, [(0, 1), (1, 3), (4, 1), (5, 1)]);
        assert_eq!(w.width(), 6);
        assert_eq!(w.label(), "toy/7");
        assert_eq!(ColumnKind::Boolean.sketch_kind(), "categorical");
        assert_eq!(ColumnKind::Numeric.sketch_kind(), "numeric");
    }
}
