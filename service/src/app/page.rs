//! Lists read a page at a time.

use super::error::AppError;

/// A page of a list: which one, and how many items each holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    /// 1-based.
    pub number: usize,
    /// Items per page.
    pub size: usize,
}

impl Page {
    /// Items per page when not asked.
    pub const DEFAULT_SIZE: usize = 100;
    /// The most items a page may hold.
    pub const MAX_SIZE: usize = 10_000;

    /// A page as asked for (`None`: the first, of the default size).
    pub fn new(number: Option<usize>, size: Option<usize>) -> Result<Self, AppError> {
        let (number, size) = (number.unwrap_or(1), size.unwrap_or(Self::DEFAULT_SIZE));
        if number == 0 || size == 0 || size > Self::MAX_SIZE {
            return Err(AppError::Invalid(format!(
                "`page` starts at 1 and `per_page` is 1 to {}",
                Self::MAX_SIZE
            )));
        }
        Ok(Self { number, size })
    }

    /// Rows to skip and to take, for SQL.
    pub fn offset_limit(self) -> (i64, i64) {
        let offset = (self.number - 1).saturating_mul(self.size);
        (
            i64::try_from(offset).unwrap_or(i64::MAX),
            i64::try_from(self.size).unwrap_or(i64::MAX),
        )
    }
}

/// One page of a list and the whole list's length.
#[derive(Debug, Clone)]
pub struct Paged<T> {
    /// The page's items.
    pub items: Vec<T>,
    /// Which page.
    pub page: Page,
    /// Items in the whole list.
    pub total: usize,
}
