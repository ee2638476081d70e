"""`resnet data` against a local HTTP server on 127.0.0.1: success and idempotence, an MD5
mismatch, a connection dropped half-way (resumed with a Range request), 404, the https -> http
fallback, an unreachable host, and --archive with good, escaping and corrupt archives.
Run by CTest: test_download.py --resnet build/resnet --archives <data fixtures>/archives"""
import argparse, hashlib, http.server, os, shutil, tempfile, threading
from harness import check, finish, run as run_program

ap = argparse.ArgumentParser()
ap.add_argument('--resnet', required=True)
ap.add_argument('--archives', required=True)
a = ap.parse_args()
good = open(os.path.join(a.archives, 'good.tar.gz'), 'rb').read()
good_md5 = hashlib.md5(good).hexdigest()
requests = []  # (path, Range header)
dropped = set()


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        requests.append((self.path, self.headers.get('Range')))
        if not self.path.endswith('/cifar-10-binary.tar.gz') or self.path.startswith('/missing'):
            self.send_error(404)
            return
        start = 0
        rng = self.headers.get('Range')
        if rng:
            start = int(rng.split('=')[1].split('-')[0])
            self.send_response(206)
            self.send_header('Content-Range', f'bytes {start}-{len(good) - 1}/{len(good)}')
        else:
            self.send_response(200)
        self.send_header('Content-Length', str(len(good) - start))
        self.end_headers()
        body = good[start:]
        if self.path.startswith('/drop/') and self.path not in dropped:
            dropped.add(self.path)  # the first answer stops half-way and hangs up
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.connection.shutdown(2)
            return
        self.wfile.write(body)


server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Handler)
threading.Thread(target=server.serve_forever, daemon=True).start()
base = f'http://127.0.0.1:{server.server_address[1]}'


def run(*args):
    return run_program(a.resnet, 'data', '--retry-delay-ms', '10', *args, timeout=120)


def leftovers(d):
    return sorted(os.listdir(d)) if os.path.isdir(d) else []


tmp = tempfile.mkdtemp()
try:
    d = os.path.join(tmp, 'ok')
    rc, out = run('--data', d, '--url', base + '/ok/cifar-10-binary.tar.gz', '--md5', good_md5)
    check(rc == 0 and os.path.isfile(os.path.join(d, 'cifar-10-batches-bin', 'test_batch.bin')), 'download + unpack: ' + out)
    n = len(requests)
    rc, out = run('--data', d, '--url', base + '/ok/cifar-10-binary.tar.gz', '--md5', good_md5)
    check(rc == 0 and 'nothing to download' in out and len(requests) == n, 'second run downloads nothing: ' + out)

    d = os.path.join(tmp, 'md5')
    rc, out = run('--data', d, '--url', base + '/ok/cifar-10-binary.tar.gz', '--md5', '0' * 32)
    check(rc == 1 and 'MD5' in out and 'expected ' + '0' * 32 in out, 'MD5 mismatch refused: ' + out)
    check(leftovers(d) == [], f'MD5 mismatch leaves nothing behind: {leftovers(d)}')

    d = os.path.join(tmp, 'drop')
    rc, out = run('--data', d, '--url', base + '/drop/cifar-10-binary.tar.gz', '--md5', good_md5)
    ranges = [r for p, r in requests if p.startswith('/drop/') and r]
    check(rc == 0 and os.path.isfile(os.path.join(d, 'cifar-10-batches-bin', 'data_batch_5.bin')), 'dropped connection recovered: ' + out)
    check(len(ranges) == 1 and ranges[0] != 'bytes=0-', f'the retry resumed with a Range request: {ranges}')

    d = os.path.join(tmp, '404')
    rc, out = run('--data', d, '--url', base + '/missing/cifar-10-binary.tar.gz')
    check(rc == 1 and 'HTTP 404' in out and '--archive' in out, '404 gives a clear error: ' + out)
    check(not os.path.exists(os.path.join(d, 'cifar-10-batches-bin')), '404 leaves no data folder')

    d = os.path.join(tmp, 'fallback')
    https = base.replace('http://', 'https://')
    rc, out = run('--data', d, '--retries', '1', '--url', https + '/ok/cifar-10-binary.tar.gz',
                  '--url', base + '/ok/cifar-10-binary.tar.gz', '--md5', good_md5)
    check(rc == 0 and os.path.isfile(os.path.join(d, 'cifar-10-batches-bin', 'test_batch.bin')), 'https fails, http serves: ' + out)

    d = os.path.join(tmp, 'offline')
    probe = http.server.HTTPServer(('127.0.0.1', 0), Handler)
    closed = probe.server_address[1]
    probe.server_close()  # nothing listens there now
    rc, out = run('--data', d, '--retries', '1', '--url', f'http://127.0.0.1:{closed}/cifar-10-binary.tar.gz')
    check(rc == 1 and 'download failed' in out and 'resnet data --data' in out and '--archive' in out,
          'offline: says what failed and how to supply the archive: ' + out)

    d = os.path.join(tmp, 'archive')
    rc, out = run('--data', d, '--archive', os.path.join(a.archives, 'good.tar.gz'), '--md5', good_md5)
    check(rc == 0 and os.path.isfile(os.path.join(d, 'cifar-10-batches-bin', 'batches.meta.txt')), '--archive: ' + out)
    for bad, why in (('dotdot.tar.gz', "refusing entry '../escape.txt'"), ('corrupt.tar.gz', 'corrupt archive')):
        d = os.path.join(tmp, bad)
        rc, out = run('--data', d, '--archive', os.path.join(a.archives, bad), '--md5', '')
        check(rc == 1 and why in out, f'--archive {bad} refused: {out}')
        check(leftovers(d) == [], f'--archive {bad} leaves nothing behind: {leftovers(d)}')
        check(not os.path.exists(os.path.join(tmp, 'escape.txt')), 'nothing escaped the folder')
    rc, out = run('--data', os.path.join(tmp, 'x'), '--archive', os.path.join(a.archives, 'good.tar.gz'))
    check(rc == 1 and 'MD5 is ' + good_md5 in out and 'nothing was unpacked' in out, 'an archive that is not CIFAR-10: ' + out)
finally:
    server.shutdown()
    shutil.rmtree(tmp)
finish()
