//! The MQTT broker, built on rumqttd, in two roles: `cloud` (devices authenticate with their
//! device id and secret and may only touch `edgewatch/v1/devices/{id}/`) and `edge` (local sensors
//! on a field gateway publish `sensors/...` for the agent). Built out by the broker issue; today
//! this crate holds no code.
