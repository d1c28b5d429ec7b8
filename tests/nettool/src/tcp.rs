//! TCP measurements: the server (`serve`) and its clients (`bench`,
//! `tcp-send`).
//!
//! A client sends one command byte and a big-endian u64 argument, then:
//! - `U` N: uploads N bytes; the server answers with the u64 count it read;
//! - `D` N: the server sends N bytes and closes;
//! - `P` SIZE: ping-pong: SIZE bytes each way, again and again until the
//!   client closes;
//! - `C` SIZE: one SIZE-byte request and its echo, then the server closes.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use crate::{Context, Error};

/// The buffer size of bulk transfers.
const CHUNK: usize = 64 * 1024;
/// The largest ping-pong or request message (the server allocates it).
pub const MAX_MESSAGE: usize = 16 << 20;
/// Ping-pong exchanges before the measured ones.
const WARMUP: u64 = 50;
/// How often `--wait` retries the connect.
const RETRY_EVERY: Duration = Duration::from_millis(100);

/// Reads until `buf` is full or EOF; returns how much it read.
fn read_full(stream: &mut TcpStream, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match stream.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Sets what every connection of the server and the clients has.
fn configure(stream: &TcpStream, timeout: Duration) -> Result<(), Error> {
    stream.set_nodelay(true).context(|| "set TCP_NODELAY")?;
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|()| stream.set_write_timeout(Some(timeout)))
        .context(|| "set the socket timeouts")
}

fn command(byte: u8, arg: u64) -> [u8; 9] {
    let mut header = [byte; 9];
    header[1..].copy_from_slice(&arg.to_be_bytes());
    header
}

/// Writes `n` bytes of `buf` again and again.
fn send_bytes(stream: &mut TcpStream, mut n: u64, buf: &[u8]) -> io::Result<()> {
    while n > 0 {
        let len = buf.len().min(usize::try_from(n).unwrap_or(usize::MAX));
        stream.write_all(&buf[..len])?;
        n -= len as u64;
    }
    Ok(())
}

/// Reads and drops up to `n` bytes; returns how many there were before EOF.
fn receive_bytes(stream: &mut TcpStream, n: u64) -> io::Result<u64> {
    let mut buf = vec![0; CHUNK];
    let mut got = 0;
    while got < n {
        let want = buf
            .len()
            .min(usize::try_from(n - got).unwrap_or(usize::MAX));
        let len = read_full(stream, &mut buf[..want])?;
        got += len as u64;
        if len < want {
            break;
        }
    }
    Ok(got)
}

fn message_buffer(size: u64) -> Result<Vec<u8>, Error> {
    match usize::try_from(size) {
        Ok(size @ 1..=MAX_MESSAGE) => Ok(vec![0; size]),
        _ => Err(Error::new(format!(
            "message size {size} is not 1 to {MAX_MESSAGE} bytes"
        ))),
    }
}

/// Accepts connections forever, each served by its own thread.
pub fn serve(listener: &TcpListener, timeout: Duration) -> ! {
    loop {
        let (stream, peer) = match listener.accept() {
            Ok(accepted) => accepted,
            Err(e) => {
                eprintln!("peapod-nettool: accept a connection: {e}");
                thread::sleep(RETRY_EVERY);
                continue;
            }
        };
        let spawned = thread::Builder::new().spawn(move || {
            if let Err(e) = handle(stream, timeout) {
                eprintln!("peapod-nettool: client {peer}: {e}");
            }
        });
        if let Err(e) = spawned {
            eprintln!("peapod-nettool: start a thread for {peer}: {e}");
        }
    }
}

fn handle(mut stream: TcpStream, timeout: Duration) -> Result<(), Error> {
    configure(&stream, timeout)?;
    let mut header = [0; 9];
    match read_full(&mut stream, &mut header).context(|| "read the command")? {
        0 => return Ok(()), // a --wait probe
        9 => {}
        n => {
            return Err(Error::new(format!(
                "the command ended after {n} of 9 bytes"
            )))
        }
    }
    let mut arg = [0; 8];
    arg.copy_from_slice(&header[1..]);
    let arg = u64::from_be_bytes(arg);
    match header[0] {
        b'U' => {
            let got = receive_bytes(&mut stream, arg).context(|| "receive the upload")?;
            if got < arg {
                return Err(Error::new(format!(
                    "the upload ended after {got} of {arg} bytes"
                )));
            }
            stream
                .write_all(&got.to_be_bytes())
                .context(|| "send the byte count")
        }
        b'D' => send_bytes(&mut stream, arg, &vec![0; CHUNK]).context(|| "send the download"),
        b'P' => {
            let mut buf = message_buffer(arg)?;
            loop {
                match read_full(&mut stream, &mut buf).context(|| "read a ping")? {
                    0 => return Ok(()),
                    n if n == buf.len() => stream.write_all(&buf).context(|| "send a pong")?,
                    n => return Err(Error::new(format!("a ping ended after {n} of {arg} bytes"))),
                }
            }
        }
        b'C' => {
            let mut buf = message_buffer(arg)?;
            stream.read_exact(&mut buf).context(|| "read the request")?;
            stream.write_all(&buf).context(|| "send the reply")
        }
        other => Err(Error::new(format!("unknown command byte {other:#04x}"))),
    }
}

/// A client of `serve`.
#[derive(Debug)]
pub struct Client {
    pub addr: SocketAddr,
    /// Bounds each connect, read and write.
    pub timeout: Duration,
}

/// A phase of `bench`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Phase {
    Upload,
    Download,
    Rtt,
    Connect,
}

#[derive(Debug)]
pub struct BenchOptions {
    /// Bytes to upload and to download.
    pub bytes: u64,
    /// Ping-pong exchanges measured.
    pub rtt: u64,
    /// New connections measured.
    pub connects: u64,
    /// Bytes of each ping, pong, request and reply.
    pub size: usize,
    /// Run just this phase.
    pub only: Option<Phase>,
    /// How long the server may take to start listening.
    pub wait: Duration,
}

impl Client {
    pub fn new(addr: SocketAddr, timeout: Duration) -> Self {
        Client { addr, timeout }
    }

    fn connect(&self) -> Result<TcpStream, Error> {
        let stream = TcpStream::connect_timeout(&self.addr, self.timeout)
            .context(|| format!("connect to {}", self.addr))?;
        configure(&stream, self.timeout)?;
        Ok(stream)
    }

    /// Retries connecting until the server accepts, for up to `wait`.
    pub fn wait_ready(&self, wait: Duration) -> Result<(), Error> {
        let deadline = Instant::now() + wait;
        loop {
            match TcpStream::connect_timeout(&self.addr, self.timeout) {
                Ok(_) => return Ok(()),
                Err(_) if Instant::now() + RETRY_EVERY < deadline => thread::sleep(RETRY_EVERY),
                Err(e) => {
                    return Err(Error::new(format!(
                        "connect to {} (waited {wait:?}): {e}",
                        self.addr
                    )))
                }
            }
        }
    }

    /// Uploads `bytes`; the time from connect to the server's count.
    pub fn upload(&self, bytes: u64) -> Result<Duration, Error> {
        let start = Instant::now();
        let mut stream = self.connect()?;
        stream
            .write_all(&command(b'U', bytes))
            .and_then(|()| send_bytes(&mut stream, bytes, &vec![0; CHUNK]))
            .context(|| format!("upload {bytes} bytes to {}", self.addr))?;
        let mut count = [0; 8];
        stream
            .read_exact(&mut count)
            .context(|| format!("read the byte count from {}", self.addr))?;
        let elapsed = start.elapsed();
        let count = u64::from_be_bytes(count);
        if count != bytes {
            return Err(Error::new(format!(
                "the server counted {count} of {bytes} bytes"
            )));
        }
        Ok(elapsed)
    }

    /// Downloads `bytes`; the time from connect to EOF.
    pub fn download(&self, bytes: u64) -> Result<Duration, Error> {
        let start = Instant::now();
        let mut stream = self.connect()?;
        stream
            .write_all(&command(b'D', bytes))
            .context(|| format!("ask {} for {bytes} bytes", self.addr))?;
        // One byte more than asked for: the server must close right after.
        let got = receive_bytes(&mut stream, bytes.saturating_add(1))
            .context(|| format!("download from {}", self.addr))?;
        let elapsed = start.elapsed();
        if got != bytes {
            return Err(Error::new(format!("downloaded {got} bytes, not {bytes}")));
        }
        Ok(elapsed)
    }

    /// Round-trip times of `count` `size`-byte exchanges on one connection.
    pub fn ping_pong(&self, count: u64, size: usize) -> Result<Vec<Duration>, Error> {
        let mut stream = self.connect()?;
        stream
            .write_all(&command(b'P', size as u64))
            .context(|| format!("start ping-pong with {}", self.addr))?;
        let mut buf = vec![0; size];
        let mut times = Vec::new();
        for i in 0..WARMUP + count {
            let start = Instant::now();
            stream
                .write_all(&buf)
                .and_then(|()| stream.read_exact(&mut buf))
                .context(|| format!("ping-pong {i} with {}", self.addr))?;
            if i >= WARMUP {
                times.push(start.elapsed());
            }
        }
        Ok(times)
    }

    /// Latencies of `count` new connections, each with one `size`-byte
    /// request and reply.
    pub fn connect_requests(&self, count: u64, size: usize) -> Result<Vec<Duration>, Error> {
        let mut request = command(b'C', size as u64).to_vec();
        request.resize(9 + size, 0);
        let mut reply = vec![0; size];
        let mut times = Vec::new();
        for _ in 0..count {
            let start = Instant::now();
            let mut stream = self.connect()?;
            stream
                .write_all(&request)
                .and_then(|()| stream.read_exact(&mut reply))
                .context(|| format!("request {size} bytes from {}", self.addr))?;
            times.push(start.elapsed());
        }
        Ok(times)
    }
}

/// Megabits (10^6 bits) per second.
pub fn mbit(bytes: u64, elapsed: Duration) -> f64 {
    bytes as f64 * 8.0 / elapsed.as_secs_f64().max(1e-9) / 1e6
}

/// Median, p90 and p99 (nearest rank) in microseconds; zeros for no samples.
fn percentiles(mut samples: Vec<Duration>) -> [f64; 3] {
    samples.sort();
    [0.5, 0.9, 0.99].map(|p| {
        let rank = (p * samples.len() as f64).ceil() as usize;
        samples
            .get(rank.saturating_sub(1))
            .map_or(0.0, |d| d.as_secs_f64() * 1e6)
    })
}

/// Runs the phases `options` asks for, handing each result to `emit` as
/// soon as it is known.
pub fn bench(
    client: &Client,
    options: &BenchOptions,
    mut emit: impl FnMut(&str, f64) -> Result<(), Error>,
) -> Result<(), Error> {
    // Probe first, so that waiting for the server is not part of a measurement.
    if !options.wait.is_zero() {
        client.wait_ready(options.wait)?;
    }
    let runs = |phase| options.only.is_none_or(|only| only == phase);
    if runs(Phase::Upload) {
        emit(
            "upload_mbit",
            mbit(options.bytes, client.upload(options.bytes)?),
        )?;
    }
    if runs(Phase::Download) {
        emit(
            "download_mbit",
            mbit(options.bytes, client.download(options.bytes)?),
        )?;
    }
    if runs(Phase::Rtt) {
        let times = client.ping_pong(options.rtt, options.size)?;
        let [median, p90, p99] = percentiles(times);
        emit("rtt_us_median", median)?;
        emit("rtt_us_p90", p90)?;
        emit("rtt_us_p99", p99)?;
    }
    if runs(Phase::Connect) {
        let times = client.connect_requests(options.connects, options.size)?;
        let [median, p90, p99] = percentiles(times);
        emit("connect_us_median", median)?;
        emit("connect_us_p90", p90)?;
        emit("connect_us_p99", p99)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(10);
    const MIB: u64 = 1 << 20;

    fn start_server() -> Client {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        thread::spawn(move || serve(&listener, TIMEOUT));
        Client::new(addr, TIMEOUT)
    }

    #[test]
    fn test_client_phases_against_serve() {
        let client = start_server();
        assert!(mbit(MIB, client.upload(MIB).unwrap()) > 0.0);
        assert!(mbit(MIB, client.download(MIB).unwrap()) > 0.0);
        client.upload(0).unwrap();
        client.download(0).unwrap();
        let rtts = client.ping_pong(20, 64).unwrap();
        assert_eq!(rtts.len(), 20);
        assert!(percentiles(rtts).iter().all(|&us| us > 0.0));
        let connects = client.connect_requests(5, 64).unwrap();
        assert_eq!(connects.len(), 5);
        assert!(percentiles(connects).iter().all(|&us| us > 0.0));
    }

    #[test]
    fn test_bench_prints_every_line() {
        let client = start_server();
        let options = BenchOptions {
            bytes: MIB,
            rtt: 20,
            connects: 5,
            size: 64,
            only: None,
            wait: Duration::from_secs(1),
        };
        let mut lines = Vec::new();
        bench(&client, &options, |name, value| {
            lines.push((name.to_string(), value));
            Ok(())
        })
        .unwrap();
        let names: Vec<&str> = lines.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "upload_mbit",
                "download_mbit",
                "rtt_us_median",
                "rtt_us_p90",
                "rtt_us_p99",
                "connect_us_median",
                "connect_us_p90",
                "connect_us_p99"
            ]
        );
        assert!(lines.iter().all(|&(_, value)| value > 0.0), "{lines:?}");
        let only = BenchOptions {
            only: Some(Phase::Connect),
            ..options
        };
        let mut count = 0;
        bench(&client, &only, |_, _| {
            count += 1;
            Ok(())
        })
        .unwrap();
        assert_eq!(count, 3);
    }

    #[test]
    fn test_serve_short_upload_gets_no_count() {
        let client = start_server();
        let mut stream = client.connect().unwrap();
        stream.write_all(&command(b'U', 1000)).unwrap();
        stream.write_all(&[0; 10]).unwrap();
        stream.shutdown(std::net::Shutdown::Write).unwrap();
        let mut rest = Vec::new();
        assert_eq!(stream.read_to_end(&mut rest).unwrap(), 0);
    }

    #[test]
    fn test_serve_closes_on_bad_command() {
        let client = start_server();
        for header in [command(b'X', 1), command(b'P', 0), command(b'C', u64::MAX)] {
            let mut stream = client.connect().unwrap();
            stream.write_all(&header).unwrap();
            let mut rest = Vec::new();
            assert_eq!(stream.read_to_end(&mut rest).unwrap(), 0);
        }
    }

    #[test]
    fn test_wait_ready_retries_until_listening() {
        let addr = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let client = Client::new(addr, TIMEOUT);
        let late = thread::spawn(move || {
            thread::sleep(Duration::from_millis(300));
            let listener = TcpListener::bind(addr).unwrap();
            listener.accept().unwrap();
        });
        client.wait_ready(Duration::from_secs(10)).unwrap();
        late.join().unwrap();
        assert!(client.wait_ready(Duration::ZERO).is_err());
    }

    #[test]
    fn test_percentiles_nearest_rank() {
        let samples = (1..=100).rev().map(Duration::from_micros).collect();
        assert_eq!(percentiles(samples), [50.0, 90.0, 99.0]);
        assert_eq!(percentiles(Vec::new()), [0.0; 3]);
    }
}
