use super::*;

fn req(s: &str) -> Parsed {
    parse(s.as_bytes())
}

#[test]
fn gets_parse_with_keep_alive_as_http_1_1_says() {
    let r = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    assert_eq!(
        req(r),
        Parsed::Request(
            Request {
                head_only: false,
                route: Route::Index,
                keep_alive: true
            },
            r.len()
        )
    );
    let Parsed::Request(r, _) = req("GET /bytes/1000 HTTP/1.0\r\n\r\n") else {
        panic!()
    };
    assert_eq!((r.route, r.keep_alive), (Route::Bytes(1000), false));
    let Parsed::Request(r, _) = req("GET /quit HTTP/1.1\r\nconnection: Close\r\n\r\n") else {
        panic!()
    };
    assert_eq!((r.route, r.keep_alive), (Route::Quit, false));
    let Parsed::Request(r, _) = req("HEAD /nope HTTP/1.0\r\nConnection: keep-alive\r\n\r\n") else {
        panic!()
    };
    assert_eq!(
        (r.route, r.keep_alive, r.head_only),
        (Route::NotFound, true, true)
    );
}

#[test]
fn partial_heads_wait_and_pipelined_ones_are_counted() {
    assert_eq!(req("GET / HTTP/1.1\r\nHost"), Parsed::Incomplete);
    let two = "GET / HTTP/1.1\r\n\r\nGET /quit HTTP/1.1\r\n\r\n";
    let Parsed::Request(_, n) = req(two) else {
        panic!()
    };
    assert_eq!(&two[n..], "GET /quit HTTP/1.1\r\n\r\n");
}

#[test]
fn malformed_requests_get_a_reason() {
    assert_eq!(
        req("GARBAGE\r\n\r\n"),
        Parsed::Bad(BadRequest::RequestLine("GARBAGE".into()))
    );
    assert_eq!(
        req("GET / HTTP/2\r\n\r\n"),
        Parsed::Bad(BadRequest::RequestLine("GET / HTTP/2".into()))
    );
    assert_eq!(
        req("GET / HTTP/1.1\r\nno colon\r\n\r\n"),
        Parsed::Bad(BadRequest::Header("no colon".into()))
    );
    assert_eq!(
        req("POST / HTTP/1.1\r\n\r\n"),
        Parsed::Bad(BadRequest::Method("POST".into()))
    );
    assert_eq!(
        req("GET / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello"),
        Parsed::Bad(BadRequest::Body)
    );
    assert_eq!(
        req("GET /bytes/lots HTTP/1.1\r\n\r\n"),
        Parsed::Bad(BadRequest::Size("lots".into()))
    );
    assert_eq!(
        parse(b"GET /\xff HTTP/1.1\r\n\r\n"),
        Parsed::Bad(BadRequest::NotText)
    );
    let long = alloc::vec![b'a'; MAX_HEAD + 1];
    assert_eq!(parse(&long), Parsed::Bad(BadRequest::TooLong));
    let a = refuse(&BadRequest::Header("x".into()));
    assert!(a.close);
    assert!(a.head.starts_with(b"HTTP/1.1 400 Bad Request\r\n"));
    assert!(
        refuse(&BadRequest::Method("PUT".into()))
            .head
            .starts_with(b"HTTP/1.1 405 ")
    );
}

#[test]
fn answers_carry_their_length_and_generated_bytes() {
    let r = Request {
        head_only: false,
        route: Route::Bytes(100),
        keep_alive: true,
    };
    let a = respond(&r, 1);
    let head = core::str::from_utf8(&a.head).unwrap();
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"));
    assert!(head.contains("Content-Length: 100\r\n"));
    assert!(head.ends_with("\r\n\r\n"));
    assert!(!a.close);
    let mut out = [0u8; 70];
    a.body.fill(30, &mut out);
    assert_eq!(out[0], body_byte(30));
    assert_eq!(out[69], body_byte(99));
    assert_eq!(body_byte(0), b'0');
    assert_eq!(body_byte(62), b'0');
    assert_eq!(body_byte(61), b'Z');
    let q = respond(
        &Request {
            head_only: false,
            route: Route::Quit,
            keep_alive: true,
        },
        0,
    );
    assert!(q.close, "quit closes");
    let h = respond(
        &Request {
            head_only: true,
            route: Route::Index,
            keep_alive: true,
        },
        0,
    );
    assert!(h.body.is_empty());
    assert!(
        core::str::from_utf8(&h.head)
            .unwrap()
            .contains("Content-Length: 24\r\n")
    );
}
