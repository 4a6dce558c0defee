use super::ticks_from_micros_at;

#[test]
fn ticks_from_micros_converts_at_qemu_and_pi_frequencies() {
    assert_eq!(
        ticks_from_micros_at(62_500_000, 10_000),
        625_000,
        "QEMU virt: 62.5 MHz"
    );
    assert_eq!(
        ticks_from_micros_at(54_000_000, 1),
        54,
        "Raspberry Pi 4: 54 MHz"
    );
    assert_eq!(
        ticks_from_micros_at(1_000_000_000, 3),
        3_000,
        "1 GHz (Armv8.6 fixed)"
    );
}

#[test]
fn event_stream_is_near_ten_kilohertz() {
    use super::{event_stream_bit, event_stream_period_us};
    for (freq, bit, us) in [
        (62_500_000, 12, 131),       // QEMU virt
        (54_000_000, 11, 75),        // Raspberry Pi 4
        (19_200_000, 10, 106),       // many older boards
        (1_000_000_000, 16 - 1, 65), // Armv8.6's fixed 1 GHz: the field tops out at 15
    ] {
        assert_eq!(event_stream_bit(freq), bit, "bit at {freq} Hz");
        assert_eq!(event_stream_period_us(freq, bit), us, "period at {freq} Hz");
    }
    // Absurdly slow counters still get a valid bit.
    assert_eq!(event_stream_bit(1), 0);
}

#[test]
fn ticks_from_micros_rounds_up_and_saturates() {
    assert_eq!(
        ticks_from_micros_at(3, 1),
        1,
        "a non-zero delay is never 0 ticks"
    );
    assert_eq!(ticks_from_micros_at(62_500_000, 0), 0);
    assert_eq!(ticks_from_micros_at(u64::MAX, u64::MAX), u64::MAX);
}
