//! The data generator: a pure function of (seed, device index, time). No state, no clock, no
//! random-number generator object — every value is derived by hashing its inputs — so the same
//! seed gives the same values on any machine, in any order, at any rate, and a restarted
//! simulator continues the same curves.
//!
//! Model, per device (parameters drawn from `hash(seed, index)`):
//! - temperature: a base of 12..24 °C plus a diurnal sine of 3..8 °C amplitude peaking mid
//!   afternoon (each device shifted by up to ±2 h), plus Gaussian noise (σ 0.15 °C);
//! - relative humidity: 40..75 % falling as the temperature rises (as air warms), plus noise,
//!   clamped to 5..100 %;
//! - drift: a third of the devices drift by up to ±0.4 °C a day, re-calibrated every 30 days;
//! - spikes: about 1 sample in 500 jumps by ±5..15 °C (a sun-struck or faulty sensor);
//! - dropouts: about 2 % of 10-minute windows report nothing (radio loss, a flat battery).

use std::f64::consts::TAU;

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;
const DROPOUT_WINDOW_MS: i64 = 10 * 60_000;

/// One sample of one simulated device.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    pub temp_c: f64,
    pub humidity_pct: f64,
}

/// The fixed traits of one device.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Profile {
    pub base_c: f64,
    pub amplitude_c: f64,
    pub phase_h: f64,
    pub humidity_base_pct: f64,
    pub drift_c_per_day: f64,
}

/// SplitMix64's finaliser: a good 64-bit mixer, enough to turn inputs into independent draws.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A uniform draw in [0, 1) from the inputs and a stream label.
fn uniform(seed: u64, index: u64, slot: i64, stream: u64) -> f64 {
    let h = mix(mix(mix(seed ^ stream.wrapping_mul(0x5851_f42d_4c95_7f2d)) ^ index) ^ slot as u64);
    (h >> 11) as f64 / (1u64 << 53) as f64
}

/// A standard normal draw (Box-Muller) from the inputs.
fn normal(seed: u64, index: u64, slot: i64, stream: u64) -> f64 {
    let u1 = uniform(seed, index, slot, stream).max(f64::MIN_POSITIVE);
    let u2 = uniform(seed, index, slot, stream + 1);
    (-2.0 * u1.ln()).sqrt() * (TAU * u2).cos()
}

/// The traits of device `index` under `seed`.
pub fn profile(seed: u64, index: u64) -> Profile {
    let draw = |stream| uniform(seed, index, 0, stream);
    let drifts = draw(5) < 1.0 / 3.0;
    Profile {
        base_c: 12.0 + 12.0 * draw(1),
        amplitude_c: 3.0 + 5.0 * draw(2),
        phase_h: -2.0 + 4.0 * draw(3),
        humidity_base_pct: 40.0 + 35.0 * draw(4),
        drift_c_per_day: if drifts { -0.4 + 0.8 * draw(6) } else { 0.0 },
    }
}

/// Device `index`'s sample at `t_ms` (Unix milliseconds), or `None` during a dropout.
pub fn sample(seed: u64, index: u64, t_ms: i64) -> Option<Sample> {
    if uniform(seed, index, t_ms.div_euclid(DROPOUT_WINDOW_MS), 10) < 0.02 {
        return None;
    }
    let p = profile(seed, index);
    let hour_of_day = t_ms.rem_euclid(DAY_MS) as f64 / HOUR_MS as f64;
    // Peak at 15:00 local (shifted by the device's phase), trough at 03:00.
    let diurnal = (TAU * (hour_of_day - 9.0 - p.phase_h) / 24.0).sin();
    let days_since_calibration = t_ms.rem_euclid(30 * DAY_MS) as f64 / DAY_MS as f64;
    let mut temp_c = p.base_c
        + p.amplitude_c * diurnal
        + p.drift_c_per_day * days_since_calibration
        + 0.15 * normal(seed, index, t_ms, 20);
    if uniform(seed, index, t_ms, 30) < 0.002 {
        let size = 5.0 + 10.0 * uniform(seed, index, t_ms, 31);
        temp_c += if uniform(seed, index, t_ms, 32) < 0.5 { size } else { -size };
    }
    let humidity_pct = (p.humidity_base_pct - 2.5 * p.amplitude_c * diurnal
        + 1.0 * normal(seed, index, t_ms, 40))
    .clamp(5.0, 100.0);
    Some(Sample { temp_c: round2(temp_c), humidity_pct: round2(humidity_pct) })
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_795_000_000_000; // 2026-11-19

    #[test]
    fn the_same_seed_gives_the_same_values_and_another_seed_others() {
        let a: Vec<_> = (0..200).map(|i| sample(42, i % 7, T0 + i as i64 * 1000)).collect();
        let b: Vec<_> = (0..200).map(|i| sample(42, i % 7, T0 + i as i64 * 1000)).collect();
        let c: Vec<_> = (0..200).map(|i| sample(43, i % 7, T0 + i as i64 * 1000)).collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
        // Order does not matter: it is a function, not a stream.
        let mut backwards: Vec<_> =
            (0..200).rev().map(|i| sample(42, i % 7, T0 + i as i64 * 1000)).collect();
        backwards.reverse();
        assert_eq!(a, backwards);
        // Pinned values (`edgewatch-sim print --seed 7 --start-ms 1795000000000 -n 2`): a change
        // to the model, or to how a seed is read, shows up here.
        assert_eq!(sample(7, 0, T0), Some(Sample { temp_c: 18.46, humidity_pct: 46.27 }));
        assert_eq!(sample(7, 1, T0 + 60_000), Some(Sample { temp_c: 27.54, humidity_pct: 50.84 }));
        assert!(a.iter().flatten().count() > 150);
    }

    #[test]
    fn afternoons_are_warmer_than_nights_and_humidity_moves_the_other_way() {
        let (mut warmer, mut drier, mut days) = (0, 0, 0);
        for index in 0..50 {
            for day in 0..4 {
                let midnight = T0 - T0.rem_euclid(DAY_MS) + day * DAY_MS;
                let (Some(night), Some(afternoon)) = (
                    sample(7, index, midnight + 3 * HOUR_MS),
                    sample(7, index, midnight + 15 * HOUR_MS),
                ) else {
                    continue;
                };
                days += 1;
                warmer += usize::from(afternoon.temp_c > night.temp_c);
                drier += usize::from(afternoon.humidity_pct < night.humidity_pct);
            }
        }
        assert!(warmer * 10 >= days * 9, "{warmer}/{days}");
        assert!(drier * 10 >= days * 9, "{drier}/{days}");
    }

    #[test]
    fn values_are_plausible_with_rare_spikes_and_dropouts() {
        let n = 100_000;
        let (mut dropped, mut spikes) = (0, 0);
        for i in 0..n {
            let t = T0 + i * 60_000;
            match sample(1, (i % 10) as u64, t) {
                None => dropped += 1,
                Some(s) => {
                    assert!((-20.0..60.0).contains(&s.temp_c), "{s:?}");
                    assert!((5.0..=100.0).contains(&s.humidity_pct), "{s:?}");
                    let p = profile(1, (i % 10) as u64);
                    if (s.temp_c - p.base_c).abs() > p.amplitude_c + 4.0 + 12.0 {
                        spikes += 1;
                    }
                }
            }
        }
        let dropped_share = dropped as f64 / n as f64;
        assert!((0.005..0.05).contains(&dropped_share), "dropouts {dropped_share}");
        assert!(spikes < n / 100, "spikes {spikes}");
    }

    #[test]
    fn some_devices_drift_and_most_do_not() {
        let drifting = (0..300).filter(|&i| profile(9, i).drift_c_per_day != 0.0).count();
        assert!((60..140).contains(&drifting), "{drifting} of 300 drift");
    }
}
