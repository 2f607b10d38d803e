//! The devices service: the device registry with ownership, credentials and enrollment, versioned
//! config push, and telemetry ingest over HTTP and the MQTT bridge, which it hands to the bus with
//! publisher confirms before it acknowledges the device. Built out by the devices issue; today this
//! crate holds no code.
