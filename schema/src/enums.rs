//! Enum columns: values stored by name in a `TEXT` column (the same on
//! SQLite and PostgreSQL), typed on both sides of the store. A row holds an
//! [`EnumCol`]; writing it writes the name, reading a name this version
//! does not know is an error naming the column's kind, never a silent
//! default.

use diesel::backend::Backend;
use diesel::deserialize::{self, FromSql, FromSqlRow};
use diesel::expression::AsExpression;
use diesel::serialize::{self, Output, ToSql};
use diesel::sql_types::Text;
use serde::{Deserialize, Serialize};
use tally_reconcile::SideKind;
use tally_reconcile::quota::{Metric, Period};
use tally_reconcile::report::Class;

/// A value kept in the store by its name.
pub trait StoredName: Copy + Sized + 'static {
    /// What the column holds, for the error when a name is unknown.
    const WHAT: &'static str;
    /// Every value.
    fn all() -> &'static [Self];
    /// The name the store keeps.
    fn stored_name(self) -> &'static str;
    /// The value of a stored name.
    fn from_stored_name(name: &str) -> Option<Self> {
        Self::all()
            .iter()
            .copied()
            .find(|v| v.stored_name() == name)
    }
}

/// An enum in a `TEXT` column. It derefs to the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, AsExpression, FromSqlRow)]
#[diesel(sql_type = Text)]
pub struct EnumCol<T>(pub T);

impl<T> std::ops::Deref for EnumCol<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T> From<T> for EnumCol<T> {
    fn from(v: T) -> Self {
        EnumCol(v)
    }
}

impl<T: StoredName> std::fmt::Display for EnumCol<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.0.stored_name())
    }
}

impl<T: StoredName + std::fmt::Debug, DB: Backend> ToSql<Text, DB> for EnumCol<T>
where
    str: ToSql<Text, DB>,
{
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, DB>) -> serialize::Result {
        self.0.stored_name().to_sql(out)
    }
}

impl<T: StoredName, DB: Backend> FromSql<Text, DB> for EnumCol<T>
where
    String: FromSql<Text, DB>,
{
    fn from_sql(bytes: DB::RawValue<'_>) -> deserialize::Result<Self> {
        let name = <String as FromSql<Text, DB>>::from_sql(bytes)?;
        T::from_stored_name(&name).map(EnumCol).ok_or_else(|| {
            format!("stored {} `{name}` is not one this version knows", T::WHAT).into()
        })
    }
}

impl StoredName for SideKind {
    const WHAT: &'static str = "side";
    fn all() -> &'static [Self] {
        &[SideKind::Client, SideKind::Gateway]
    }
    fn stored_name(self) -> &'static str {
        match self {
            SideKind::Client => "client",
            SideKind::Gateway => "gateway",
        }
    }
}

impl StoredName for Class {
    const WHAT: &'static str = "class";
    fn all() -> &'static [Self] {
        &Class::ALL
    }
    fn stored_name(self) -> &'static str {
        self.name()
    }
}

impl StoredName for Metric {
    const WHAT: &'static str = "quota metric";
    fn all() -> &'static [Self] {
        &[Metric::Cost, Metric::Tokens, Metric::Requests]
    }
    fn stored_name(self) -> &'static str {
        match self {
            Metric::Cost => "cost",
            Metric::Tokens => "tokens",
            Metric::Requests => "requests",
        }
    }
}

impl StoredName for Period {
    const WHAT: &'static str = "quota period";
    fn all() -> &'static [Self] {
        &[Period::Day, Period::Week, Period::Month]
    }
    fn stored_name(self) -> &'static str {
        match self {
            Period::Day => "day",
            Period::Week => "week",
            Period::Month => "month",
        }
    }
}

/// Declares an enum of the store's own, kept by name.
macro_rules! stored_enum {
    ($(#[$m:meta])* $name:ident, $what:literal { $($(#[$vm:meta])* $v:ident => $s:literal,)+ }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name {
            $($(#[$vm])* $v,)+
        }

        impl StoredName for $name {
            const WHAT: &'static str = $what;
            fn all() -> &'static [Self] {
                &[$($name::$v,)+]
            }
            fn stored_name(self) -> &'static str {
                match self {
                    $($name::$v => $s,)+
                }
            }
        }

        impl $name {
            /// The name the store and the API use.
            pub fn as_str(self) -> &'static str {
                self.stored_name()
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.pad(self.stored_name())
            }
        }
    };
}

stored_enum! {
    /// Which usage a quota counts.
    Basis, "quota basis" {
        /// Gateway rows: what was billed (matched and unattributed alike).
        Billed => "billed",
        /// Client-logged rows (duplicates left out).
        Client => "client",
    }
}

stored_enum! {
    /// What an alert is about.
    AlertKind, "alert kind" {
        /// Gateway traffic no client row accounts for, on a registered key.
        Unattributed => "unattributed",
        /// Traffic on a key the registry does not know.
        UnregisteredKey => "unregistered_key",
        /// Rows the run could not judge or price (rejects, unpriced rows,
        /// duplicates).
        DataQuality => "data_quality",
        /// A quota crossed a threshold.
        QuotaThreshold => "quota_threshold",
        /// A quota's burn rate reaches its limit before the period ends.
        QuotaForecast => "quota_forecast",
        /// The daily digest of what is firing.
        Digest => "digest",
        /// Late rows changed a closed billing month: corrections follow.
        PeriodCorrection => "period_correction",
        /// A provider's report and the gateway's rows disagree by more
        /// than the configured amount.
        TieoutGap => "tieout_gap",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trips<T: StoredName + PartialEq + std::fmt::Debug>() {
        let mut names = std::collections::HashSet::new();
        for v in T::all() {
            assert!(
                names.insert(v.stored_name()),
                "{} named twice",
                v.stored_name()
            );
            assert_eq!(T::from_stored_name(v.stored_name()), Some(*v));
        }
        assert_eq!(T::from_stored_name("no such name"), None);
    }

    #[test]
    fn every_stored_name_reads_back_as_its_value() {
        round_trips::<SideKind>();
        round_trips::<Class>();
        round_trips::<Metric>();
        round_trips::<Period>();
        round_trips::<Basis>();
        round_trips::<AlertKind>();
    }
}
