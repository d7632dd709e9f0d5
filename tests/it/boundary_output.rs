//! The fence holds where an agent's bytes leave the sandbox: the egress proxy checks every
//! request, the terminal never gets a raw control character from a record, Markdown and HTML
//! carry ticket and stage text inert, and `ship` pushes to no protected branch however its
//! branch template renders. Each test is an attack that fails the test if it succeeds.

use std::io::{Read as _, Write as _};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use super::hostile::{Lab, egress_attack, egress_events};

/// An HTTP/1.1 server of the test's own that keeps connections open and answers every request
/// head it gets; returns its port and every byte it received.
fn keep_alive_server(bind: &str) -> (u16, Arc<Mutex<Vec<u8>>>) {
    let listener = TcpListener::bind(bind).expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                let (mut mine, mut answered) = (Vec::new(), 0);
                let mut buf = [0u8; 4096];
                while let Ok(n) = stream.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    mine.extend_from_slice(&buf[..n]);
                    log.lock().expect("lock").extend_from_slice(&buf[..n]);
                    let heads = mine.windows(4).filter(|w| w == b"\r\n\r\n").count();
                    while answered < heads {
                        answered += 1;
                        let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nBODY-kept");
                    }
                }
            });
        }
    });
    (port, seen)
}

#[test]
fn egress_checks_every_request_of_a_connection() {
    let lab = Lab::new();
    // A server that keeps its connections open, on this machine, reached by the proxy at the
    // lab network's gateway.
    let (port, seen) = keep_alive_server("0.0.0.0:0");
    let gateway = lab.gateway();
    let kept = format!("{gateway}:{port}");
    let (_, ev, log) = lab.attack(
        &["allowed.test:80", &kept],
        &format!(
            r"printf 'GET http://allowed.test/ HTTP/1.1\r\nHost: allowed.test\r\n\r\nGET http://allowed.test/ HTTP/1.1\r\nHost: denied.test\r\n\r\n' | nc -w 3 $PROXY 3128; echo
(printf 'GET http://{kept}/one HTTP/1.1\r\nHost: {gateway}\r\n\r\n'; sleep 1; printf 'GET http://denied.test/two HTTP/1.1\r\nHost: denied.test\r\n\r\n'; sleep 3) | nc -w 5 $PROXY 3128; echo
echo end"
        ),
    );
    assert!(log.contains("BODY-allowed") && log.contains("BODY-kept") && log.contains("end"), "{log}");
    assert!(!log.contains("BODY-denied"), "{log}");
    let got = String::from_utf8_lossy(&seen.lock().expect("lock")).into_owned();
    assert!(got.contains("GET /one ") && !got.contains("two") && !got.contains("denied"), "{got}");
    let decisions = egress_events(&ev);
    assert!(decisions.contains(&("allowed.test:80".to_owned(), true)), "{decisions:?}");
    assert!(decisions.contains(&(kept, true)), "{decisions:?}");
    // The pipelined request (another Host on the allowed target) and the one on the kept-alive
    // connection (a denied host) are refused, and recorded.
    assert!(decisions.contains(&("allowed.test:80".to_owned(), false)), "{decisions:?}");
    assert!(decisions.contains(&("denied.test:80".to_owned(), false)), "{decisions:?}");
}

#[test]
fn local_egress_checks_every_request_of_a_connection() {
    let (port, seen) = keep_alive_server("127.0.0.1:0");
    let (_, ev, log) = egress_attack(
        "local",
        None,
        &[&format!("localhost:{port}")],
        &format!(
            r"printf 'GET http://localhost:{port}/one HTTP/1.1\r\nHost: localhost\r\n\r\nGET http://localhost:{port}/two HTTP/1.1\r\nHost: other.invalid\r\n\r\n' | busybox nc -w 3 $PROXY 3128; echo
(printf 'GET http://localhost:{port}/three HTTP/1.1\r\nHost: localhost\r\n\r\n'; sleep 1; printf 'GET http://denied.invalid/four HTTP/1.1\r\nHost: denied.invalid\r\n\r\n'; sleep 2) | busybox nc -w 4 $PROXY 3128; echo
echo end"
        ),
    );
    assert!(log.contains("BODY-kept") && log.contains("end"), "{log}");
    // The server got the first request of each connection, and nothing after it.
    let got = String::from_utf8_lossy(&seen.lock().expect("lock")).into_owned();
    assert!(got.contains("GET /one ") && got.contains("GET /three "), "{got}");
    assert!(!got.contains("/two") && !got.contains("/four") && !got.contains("invalid"), "{got}");
    let decisions = egress_events(&ev);
    let target = format!("localhost:{port}");
    assert_eq!(decisions.iter().filter(|(h, allowed)| *h == target && *allowed).count(), 2, "{decisions:?}");
    assert!(decisions.contains(&(target, false)), "{decisions:?}");
    assert!(decisions.contains(&("denied.invalid:80".to_owned(), false)), "{decisions:?}");
}
