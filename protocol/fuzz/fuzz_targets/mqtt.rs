//! MQTT topic and sensor payload parsing on arbitrary bytes: never panics, and every parsed topic
//! prints back to itself.
#![no_main]

use edgewatch_protocol::{SensorValue, Topic};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = SensorValue::parse(data);
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(topic) = Topic::parse(text)
    {
        assert_eq!(topic.to_string(), text);
        let _ = topic.sensor_metric_name();
    }
});
