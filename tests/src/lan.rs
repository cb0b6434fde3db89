//! A LAN in network namespaces: a "switch" namespace holding a bridge, and hosts (client,
//! node, backends) each with an `eth0` plugged into it. Everything is removed when dropped.
//!
//! Tests run clients and servers inside a host's namespace from threads that `setns(2)`
//! into it ([`in_netns`]); sockets created there stay in that namespace.

use std::{
    io::{BufRead, BufReader, Write},
    net::{SocketAddr, TcpListener, TcpStream, UdpSocket},
    os::fd::AsRawFd,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::Duration,
};

use crate::netns::Netns;

/// A bridge in a namespace of its own.
pub struct Lan {
    /// Hosts, dropped before the switch.
    hosts: Vec<String>,
    switch: Netns,
    ports: std::sync::atomic::AtomicU32,
}

impl Lan {
    pub fn new() -> Self {
        crate::require_root();
        let switch = Netns::new("sw");
        switch.ip(&["link", "add", "br0", "type", "bridge"]);
        switch.ip(&["link", "set", "br0", "up"]);
        Self {
            hosts: Vec::new(),
            switch,
            ports: 0.into(),
        }
    }

    /// A host on the LAN: its namespace, with `eth0` addressed `v4`/24 and `v6`/64.
    pub fn host(&mut self, role: &str, v4: &str, v6: &str) -> Netns {
        let ns = Netns::new(role);
        let n = self.ports.fetch_add(1, Ordering::Relaxed);
        let port = format!("p{n}");
        crate::netns::run(std::process::Command::new("ip").args([
            "link",
            "add",
            "eth0",
            "netns",
            &ns.name,
            "type",
            "veth",
            "peer",
            "name",
            &port,
            "netns",
            &self.switch.name,
        ]));
        self.switch.ip(&["link", "set", &port, "master", "br0"]);
        self.switch.ip(&["link", "set", &port, "up"]);
        ns.ip(&["addr", "add", &format!("{v4}/24"), "dev", "eth0"]);
        ns.ip(&["addr", "add", &format!("{v6}/64"), "dev", "eth0", "nodad"]);
        ns.ip(&["link", "set", "eth0", "up"]);
        self.hosts.push(ns.name.clone());
        ns
    }
}

impl Default for Lan {
    fn default() -> Self {
        Self::new()
    }
}

/// Runs `f` on a thread inside namespace `ns`.
pub fn in_netns<T: Send + 'static>(
    ns: &Netns,
    f: impl FnOnce() -> T + Send + 'static,
) -> JoinHandle<T> {
    let path = format!("/var/run/netns/{}", ns.name);
    std::thread::spawn(move || {
        enter(&path);
        f()
    })
}

/// Moves the calling thread into the namespace at `path`.
pub fn enter(path: &str) {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("opening {path}: {e}"));
    // SAFETY: setns on a valid namespace fd affects only the calling thread.
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
}

/// Server threads inside a namespace; they stop when this is dropped.
struct Servers {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Servers {
    fn new() -> Self {
        Self {
            stop: Arc::new(AtomicBool::new(false)),
            threads: Vec::new(),
        }
    }

    /// Accepts TCP connections on `addr` inside `ns`, each served by `handler` on a thread of
    /// its own; returns once the socket is bound.
    fn tcp(&mut self, ns: &Netns, addr: SocketAddr, name: &str, handler: Handler) {
        let (tx, rx) = std::sync::mpsc::channel();
        let (name, stop) = (name.to_owned(), Arc::clone(&self.stop));
        self.threads.push(in_netns(ns, move || {
            let listener = TcpListener::bind(addr).expect("bind TCP");
            listener.set_nonblocking(true).unwrap();
            tx.send(()).unwrap();
            while !stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, peer)) => {
                        let name = name.clone();
                        let stop = Arc::clone(&stop);
                        std::thread::spawn(move || handler(stream, peer, &name, &stop));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        }));
        rx.recv_timeout(Duration::from_secs(5))
            .expect("TCP server up");
    }

    /// Answers every UDP datagram on `addr` inside `ns` with `<name> <peer address>`.
    fn udp(&mut self, ns: &Netns, addr: SocketAddr, name: &str) {
        let (tx, rx) = std::sync::mpsc::channel();
        let (name, stop) = (name.to_owned(), Arc::clone(&self.stop));
        self.threads.push(in_netns(ns, move || {
            let socket = UdpSocket::bind(addr).expect("bind UDP");
            socket
                .set_read_timeout(Some(Duration::from_millis(50)))
                .unwrap();
            tx.send(()).unwrap();
            let mut buf = [0u8; 1500];
            while !stop.load(Ordering::Relaxed) {
                if let Ok((_, peer)) = socket.recv_from(&mut buf) {
                    let _ = socket.send_to(
                        format!("{name} {}", peer.ip().to_canonical()).as_bytes(),
                        peer,
                    );
                }
            }
        }));
        rx.recv_timeout(Duration::from_secs(5))
            .expect("UDP server up");
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Serves one TCP connection: the stream, its peer, the server's name, the stop flag.
type Handler = fn(TcpStream, SocketAddr, &str, &AtomicBool);

/// A server that answers every line (TCP) or datagram (UDP) with `<name> <peer address>`;
/// stops when dropped.
pub struct NameServer {
    _servers: Servers,
}

impl NameServer {
    /// Serves TCP and UDP on `addr` inside `ns`.
    pub fn start(ns: &Netns, addr: SocketAddr, name: &str) -> Self {
        let mut servers = Servers::new();
        servers.tcp(ns, addr, name, serve_lines);
        servers.udp(ns, addr, name);
        Self { _servers: servers }
    }
}

fn serve_lines(stream: TcpStream, peer: SocketAddr, name: &str, stop: &AtomicBool) {
    let _ = stream.set_read_timeout(Some(Duration::from_millis(100)));
    let mut writer = match stream.try_clone() {
        Ok(w) => w,
        Err(_) => return,
    };
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    while !stop.load(Ordering::Relaxed) {
        match reader.read_line(&mut line) {
            Ok(0) => return,
            Ok(_) => {
                line.clear();
                if writer
                    .write_all(format!("{name} {}\n", peer.ip().to_canonical()).as_bytes())
                    .is_err()
                {
                    return;
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return,
        }
    }
}

/// A TCP connection to a [`NameServer`] (through whatever is in between).
pub struct NameClient {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl NameClient {
    /// Connects (within `timeout`); must be called on a thread inside the client namespace.
    pub fn connect(addr: SocketAddr, timeout: Duration) -> std::io::Result<Self> {
        let stream = TcpStream::connect_timeout(&addr, timeout)?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        Ok(Self {
            writer: stream.try_clone()?,
            reader: BufReader::new(stream),
        })
    }

    /// Asks who answers: `<name> <address the server saw>`.
    pub fn ask(&mut self) -> std::io::Result<String> {
        self.writer.write_all(b"?\n")?;
        let mut line = String::new();
        self.reader.read_line(&mut line)?;
        if line.is_empty() {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        Ok(line.trim().to_owned())
    }
}

/// One UDP question to a [`NameServer`]; must be called inside the client namespace.
pub fn ask_udp(addr: SocketAddr, timeout: Duration) -> std::io::Result<String> {
    let bind: SocketAddr = if addr.is_ipv6() {
        "[::]:0".parse().unwrap()
    } else {
        "0.0.0.0:0".parse().unwrap()
    };
    let socket = UdpSocket::bind(bind)?;
    socket.set_read_timeout(Some(timeout))?;
    socket.send_to(b"?", addr)?;
    let mut buf = [0u8; 256];
    let (n, _) = socket.recv_from(&mut buf)?;
    Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
}

/// An HTTP/1.1 server answering every request with `200` and the body
/// `<name> <path> <peer address>`; stops when dropped.
pub struct HttpNameServer {
    _servers: Servers,
}

impl HttpNameServer {
    /// Serves HTTP/1.1 on `addr` inside `ns`.
    pub fn start(ns: &Netns, addr: SocketAddr, name: &str) -> Self {
        let mut servers = Servers::new();
        servers.tcp(ns, addr, name, serve_http);
        Self { _servers: servers }
    }
}

fn serve_http(stream: TcpStream, peer: SocketAddr, name: &str, stop: &AtomicBool) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    let mut path = None;
    let mut line = String::new();
    while !stop.load(Ordering::Relaxed) {
        match reader.read_line(&mut line) {
            Ok(0) => return,
            Ok(_) => {
                let l = line.trim_end();
                if path.is_none() {
                    path = l.split(' ').nth(1).map(str::to_owned);
                } else if l.is_empty() {
                    let body = format!(
                        "{name} {} {}",
                        path.take().unwrap_or_default(),
                        peer.ip().to_canonical()
                    );
                    let head = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\r\n",
                        body.len()
                    );
                    if writer.write_all(head.as_bytes()).is_err()
                        || writer.write_all(body.as_bytes()).is_err()
                    {
                        return;
                    }
                }
                line.clear();
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return,
        }
    }
}
