//! Forecasting on the device and in the cloud.
//!
//! Today: the daily-weather dataset reader ([`daily`]), lag/calendar features for next-day
//! forecasts ([`features`]), a standardised ridge regressor on smartcore ([`ridge`]) and the
//! walk-forward evaluation against persistence and climatology ([`eval`]) behind
//! `edgewatch forecast eval`. Still to come (forecast issue): the open-meteo client with its
//! offline cache, random forests and uncertainty bands, plots, and the series-forecast function
//! the agent and monitoring call.

pub mod daily;
pub mod eval;
pub mod features;
pub mod ridge;
