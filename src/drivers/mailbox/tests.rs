use super::*;

#[test]
fn a_request_buffer_and_its_answer() {
    let b = request(tag::CLOCK_RATE, &[3], 2);
    assert_eq!(b, [32, 0, 0x30002, 8, 0, 3, 0, 0]);
    let mut got = b.clone();
    got[1] = 0x8000_0000;
    got[4] = 0x8000_0008;
    got[6] = 1_500_000_000;
    assert_eq!(answer(&got, 2), Ok(vec![3, 1_500_000_000]));
}

#[test]
fn unanswered_buffers_and_tags_are_refused() {
    let b = request(tag::BOARD_SERIAL, &[], 2);
    assert_eq!(
        answer(&b, 2),
        Err(MailboxError::Refused {
            tag: tag::BOARD_SERIAL,
            code: 0
        })
    );
    let mut got = b.clone();
    got[1] = 0x8000_0000;
    assert_eq!(
        answer(&got, 2),
        Err(MailboxError::Refused {
            tag: tag::BOARD_SERIAL,
            code: 0
        })
    );
    assert_eq!(
        alloc::format!(
            "{}",
            MailboxError::Refused {
                tag: 1,
                code: 0x8000_0001
            }
        ),
        "tag 0x00000001: refused (0x80000001)"
    );
}
