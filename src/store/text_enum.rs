//! Domain enums stored in `text` columns (`jobs.state`, `jobs.source`, `jobs.options_mode`,
//! `job_events.source`, …): encoded as their snake_case name, decoded by the same name, a
//! value the enum does not know being a decode error (never a silent default). The domain
//! stays free of SQL; this is the one place that says how these enums sit in Postgres.

use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::postgres::{PgArgumentBuffer, PgHasArrayType, PgTypeInfo, PgValueRef};
use sqlx::{Decode, Encode, Postgres, Type};

use crate::domain::{EventSource, JobState, OptionsMode};

/// How an enum reads and writes its stored name.
pub trait StoredName: Sized + Copy {
    const WHAT: &'static str;
    fn stored_name(self) -> &'static str;
    fn from_stored_name(name: &str) -> Option<Self>;
}

macro_rules! text_enum {
    ($ty:ty, $what:literal, $as_str:expr, $parse:expr) => {
        impl StoredName for $ty {
            const WHAT: &'static str = $what;
            fn stored_name(self) -> &'static str {
                ($as_str)(self)
            }
            fn from_stored_name(name: &str) -> Option<Self> {
                ($parse)(name)
            }
        }

        impl Type<Postgres> for $ty {
            fn type_info() -> PgTypeInfo {
                <&str as Type<Postgres>>::type_info()
            }
            fn compatible(ty: &PgTypeInfo) -> bool {
                <&str as Type<Postgres>>::compatible(ty)
            }
        }

        impl PgHasArrayType for $ty {
            fn array_type_info() -> PgTypeInfo {
                <&str as PgHasArrayType>::array_type_info()
            }
        }

        impl<'r> Decode<'r, Postgres> for $ty {
            fn decode(value: PgValueRef<'r>) -> Result<Self, BoxDynError> {
                let name = <&str as Decode<Postgres>>::decode(value)?;
                <$ty as StoredName>::from_stored_name(name)
                    .ok_or_else(|| format!("unknown {} {name:?}", <$ty as StoredName>::WHAT).into())
            }
        }

        impl Encode<'_, Postgres> for $ty {
            fn encode_by_ref(&self, buf: &mut PgArgumentBuffer) -> Result<IsNull, BoxDynError> {
                <&str as Encode<Postgres>>::encode(self.stored_name(), buf)
            }
        }
    };
}

text_enum!(JobState, "job state", JobState::as_str, JobState::parse);
text_enum!(
    EventSource,
    "event source",
    EventSource::as_str,
    EventSource::parse
);
text_enum!(
    OptionsMode,
    "options mode",
    OptionsMode::as_str,
    OptionsMode::parse
);

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trips<T: StoredName + PartialEq + std::fmt::Debug>(all: &[T]) {
        for value in all {
            assert_eq!(T::from_stored_name(value.stored_name()), Some(*value));
        }
        assert_eq!(T::from_stored_name("no such name"), None);
    }

    #[test]
    fn every_stored_name_reads_back_as_its_value() {
        round_trips(&JobState::ALL);
        round_trips(&[
            EventSource::Api,
            EventSource::Dispatcher,
            EventSource::Reconciler,
            EventSource::Poller,
            EventSource::Callback,
            EventSource::Wecom,
            EventSource::Operator,
        ]);
        round_trips(&[OptionsMode::Strict, OptionsMode::BestEffort]);
        assert_eq!(OptionsMode::BestEffort.stored_name(), "best_effort");
    }
}
