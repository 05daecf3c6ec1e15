//! Money: amounts in a currency's minor units (ISO 4217 exponent), and the
//! one rounding rule of the CSMS.
//!
//! # The rounding rule
//!
//! 1. **Pricing is exact.** The tariff engine multiplies and adds exact
//!    decimals; no intermediate amount (a dimension's price, a step-size
//!    rounding of volume, VAT on the amount before taxes) is rounded.
//! 2. **CDR prices carry at most 4 decimals**, the most an OCPI `number`
//!    allows ([`cdr_price`]): each total of a CDR (before and after taxes,
//!    per component and overall) is rounded on its own from the exact value,
//!    half away from zero.
//! 3. **What is charged is the session's total after taxes, rounded once to
//!    the currency's minor unit**, half away from zero ([`Money::round`]):
//!    EUR and USD to cents, JPY to yen, KWD to fils (3 decimals). Holds,
//!    captures, wallet balances and receipts are [`Money`], an integer
//!    number of minor units, so no later step can create a fraction of a
//!    cent.
//!
//! Half away from zero is the commercial convention (1.005 → 1.01,
//! −1.005 → −1.01); rounding the total once (not each line) is what the EU
//! VAT directive allows and keeps the charged amount within half a minor
//! unit of the exact price.
//!
//! # Example
//!
//! ```
//! use evproto_csms_core::money::{cdr_price, Currency, Money};
//! use rust_decimal::Decimal;
//!
//! let exact = Decimal::new(100468, 5); // 1.00468, as the engine priced it
//! let eur = Currency::from_code("EUR").unwrap();
//! let charged = Money::round(exact, eur);
//! assert_eq!(charged.minor(), 100);
//! assert_eq!(charged.to_string(), "1.00 EUR");
//! assert_eq!(cdr_price(exact), Decimal::new(10047, 4));
//! ```

use std::fmt;

use rust_decimal::{Decimal, RoundingStrategy};

pub use iso_currency::Currency;

/// Why an amount is not money.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MoneyError {
    /// The currency code is not an ISO 4217 currency with minor units.
    UnknownCurrency(String),
    /// The amount does not fit 64 bits of minor units.
    OutOfRange,
}

impl fmt::Display for MoneyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MoneyError::UnknownCurrency(c) => {
                write!(f, "{c:?} is not an ISO 4217 currency with minor units")
            }
            MoneyError::OutOfRange => f.write_str("amount out of range"),
        }
    }
}

impl std::error::Error for MoneyError {}

/// An amount in a currency, as an integer number of its minor units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Money {
    minor: i64,
    currency: Currency,
}

/// The number of decimals of a currency's minor unit (EUR 2, JPY 0, KWD 3);
/// currencies without one (gold, SDR) are refused.
pub fn exponent(currency: Currency) -> Result<u32, MoneyError> {
    currency
        .exponent()
        .map(u32::from)
        .ok_or_else(|| MoneyError::UnknownCurrency(currency.code().to_owned()))
}

impl Money {
    /// `minor` minor units of `currency`.
    pub fn from_minor(minor: i64, currency: Currency) -> Money {
        Money { minor, currency }
    }

    /// An exact amount rounded to the currency's minor unit, half away from
    /// zero (the rule's step 3).
    ///
    /// # Panics
    ///
    /// Never for amounts within ±9.2e16 minor units; use [`Money::try_round`]
    /// for amounts from outside.
    pub fn round(amount: Decimal, currency: Currency) -> Money {
        match Money::try_round(amount, currency) {
            Ok(m) => m,
            Err(e) => panic!("{amount} {}: {e}", currency.code()),
        }
    }

    /// [`Money::round`] for amounts and currencies from outside.
    ///
    /// # Errors
    ///
    /// The currency has no minor unit, or the amount is out of range.
    pub fn try_round(amount: Decimal, currency: Currency) -> Result<Money, MoneyError> {
        let e = exponent(currency)?;
        let scaled = amount
            .round_dp_with_strategy(e, RoundingStrategy::MidpointAwayFromZero)
            .checked_mul(Decimal::from(10i64.pow(e)))
            .ok_or(MoneyError::OutOfRange)?;
        let minor = i64::try_from(scaled).map_err(|_| MoneyError::OutOfRange)?;
        Ok(Money { minor, currency })
    }

    /// A currency code and an exact amount, as the API and tariffs give them.
    ///
    /// # Errors
    ///
    /// Not an ISO 4217 code with a minor unit, or out of range.
    pub fn parse(amount: Decimal, code: &str) -> Result<Money, MoneyError> {
        let currency = Currency::from_code(&code.to_ascii_uppercase())
            .ok_or_else(|| MoneyError::UnknownCurrency(code.to_owned()))?;
        Money::try_round(amount, currency)
    }

    /// The number of minor units.
    pub fn minor(&self) -> i64 {
        self.minor
    }

    /// The currency.
    pub fn currency(&self) -> Currency {
        self.currency
    }

    /// The amount as a decimal in major units, with exactly the currency's
    /// decimals (`1.00`).
    pub fn to_decimal(&self) -> Decimal {
        let e = exponent(self.currency).unwrap_or(0);
        Decimal::new(self.minor, e)
    }

    /// `self + other`; `None` for different currencies or on overflow.
    pub fn checked_add(self, other: Money) -> Option<Money> {
        (self.currency == other.currency).then_some(())?;
        Some(Money {
            minor: self.minor.checked_add(other.minor)?,
            currency: self.currency,
        })
    }

    /// `self - other`; `None` for different currencies or on overflow.
    pub fn checked_sub(self, other: Money) -> Option<Money> {
        (self.currency == other.currency).then_some(())?;
        Some(Money {
            minor: self.minor.checked_sub(other.minor)?,
            currency: self.currency,
        })
    }
}

impl fmt::Display for Money {
    /// `1.00 EUR`, `500 JPY`, `1.250 KWD`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.to_decimal(), self.currency.code())
    }
}

/// A CDR price: at most 4 decimals (an OCPI `number`), half away from zero
/// (the rule's step 2), trailing zeros removed.
pub fn cdr_price(exact: Decimal) -> Decimal {
    exact
        .round_dp_with_strategy(4, RoundingStrategy::MidpointAwayFromZero)
        .normalize()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }
    fn cur(code: &str) -> Currency {
        Currency::from_code(code).unwrap()
    }

    #[test]
    fn minor_units_by_currency_exponent() {
        assert_eq!(Money::round(d("1.00468"), cur("EUR")).minor(), 100);
        assert_eq!(Money::round(d("1.005"), cur("EUR")).minor(), 101);
        assert_eq!(Money::round(d("-1.005"), cur("EUR")).minor(), -101);
        assert_eq!(Money::round(d("1.0049999"), cur("EUR")).minor(), 100);
        assert_eq!(Money::round(d("499.5"), cur("JPY")).minor(), 500);
        assert_eq!(Money::round(d("1.2345"), cur("KWD")).minor(), 1235);
        assert_eq!(
            Money::round(d("1.2345"), cur("KWD")).to_string(),
            "1.235 KWD"
        );
        assert_eq!(Money::round(d("7"), cur("EUR")).to_string(), "7.00 EUR");
        assert_eq!(Money::round(d("500"), cur("JPY")).to_string(), "500 JPY");
    }

    #[test]
    fn refused_currencies_and_ranges() {
        assert_eq!(
            Money::parse(d("1"), "XAU"),
            Err(MoneyError::UnknownCurrency("XAU".into()))
        );
        assert_eq!(
            Money::parse(d("1"), "ABC"),
            Err(MoneyError::UnknownCurrency("ABC".into()))
        );
        assert_eq!(Money::parse(d("2.5"), "eur").unwrap().minor(), 250);
        assert_eq!(
            Money::parse(Decimal::MAX, "EUR"),
            Err(MoneyError::OutOfRange)
        );
    }

    #[test]
    fn arithmetic_stays_in_one_currency() {
        let a = Money::from_minor(150, cur("EUR"));
        let b = Money::from_minor(25, cur("EUR"));
        assert_eq!(a.checked_sub(b).unwrap().to_decimal(), d("1.25"));
        assert_eq!(a.checked_add(b).unwrap().minor(), 175);
        assert_eq!(a.checked_add(Money::from_minor(1, cur("USD"))), None);
        assert_eq!(Money::from_minor(i64::MAX, cur("EUR")).checked_add(b), None);
    }

    #[test]
    fn cdr_prices_have_at_most_four_decimals() {
        assert_eq!(cdr_price(d("1.00468")), d("1.0047"));
        assert_eq!(cdr_price(d("0.00005")), d("0.0001"));
        assert_eq!(cdr_price(d("-0.00005")), d("-0.0001"));
        assert_eq!(cdr_price(d("2.50000")).to_string(), "2.5");
    }
}
