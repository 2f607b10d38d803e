//! Forecasting on the device and in the cloud: an open-meteo client with an offline cache, lag and
//! calendar features, smartcore regressors chosen by walk-forward backtest, and PNG plots. Built
//! out by the forecast issue; today this crate holds no code.
