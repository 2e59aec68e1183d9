#!/usr/bin/python3
# A real RTSP camera for integration tests: GStreamer's RTSP server serving a live H.264 test
# pattern on 127.0.0.1. Run with Debian's /usr/bin/python3 (it has `gi`; a pyenv python does not).
#
#   /usr/bin/python3 rtsp-server.py --port N [--path /cam] [--pattern ball|snow|smpte]
#       [--width 320 --height 240 --fps 10] [--bitrate-kbps 500] [--exit-on-stdin-eof]
#       [--file PATH]   (serve a pre-encoded Matroska H.264 file instead: no encoder running)
#
# Prints `READY rtsp://127.0.0.1:N/cam` once the listening socket is bound. --port 0 picks a
# free port (no race between choosing and binding); READY carries the real one.

import argparse
import os
import signal
import sys
import time

import gi

gi.require_version('Gst', '1.0')
gi.require_version('GstRtspServer', '1.0')
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

HOST = '127.0.0.1'
# After a SIGKILLed predecessor the port can stay busy for a moment; keep trying this long.
BIND_RETRY_SECONDS = 5.0


def parse_args():
    p = argparse.ArgumentParser(description='RTSP test camera')
    p.add_argument('--port', type=int, required=True)
    p.add_argument('--path', default='/cam')
    p.add_argument('--pattern', choices=['ball', 'snow', 'smpte'], default='ball')
    p.add_argument('--width', type=int, default=320)
    p.add_argument('--height', type=int, default=240)
    p.add_argument('--fps', type=int, default=10)
    p.add_argument('--bitrate-kbps', type=int, default=500)
    # A pre-encoded file, played at its own pace: many cameras without an encoder each. At its
    # end the stream ends, as a camera that restarts: clients reconnect and it plays again.
    p.add_argument('--file')
    # The test harness keeps our stdin open; EOF means it died, so don't linger holding a port.
    p.add_argument('--exit-on-stdin-eof', action='store_true')
    a = p.parse_args()
    if not a.path.startswith('/'):
        a.path = '/' + a.path
    return a


def launch_line(a):
    if a.file:
        return f'( filesrc location="{a.file}" ! matroskademux ! h264parse ! rtph264pay name=pay0 pt=96 config-interval=1 )'
    # format=I420: otherwise x264enc may negotiate Y444 and emit High 4:4:4, which real cameras
    # never send. key-int-max=fps: a keyframe every second so 1 s segments cut cleanly.
    # zerolatency: no B-frames and no lookahead, like a camera.
    parts = [
        f'videotestsrc is-live=true pattern={a.pattern}',
        f'video/x-raw,format=I420,width={a.width},height={a.height},framerate={a.fps}/1',
    ]
    # clockoverlay lives in gst-plugins-base's pango plugin, which may not be installed.
    if Gst.ElementFactory.find('clockoverlay') is not None:
        parts.append('clockoverlay')
    parts += [
        f'x264enc tune=zerolatency speed-preset=ultrafast key-int-max={a.fps} bitrate={a.bitrate_kbps}',
        # config-interval=1: SPS/PPS in-band every second, so a client joining mid-stream of the
        # shared media can start decoding at the next keyframe.
        'rtph264pay name=pay0 pt=96 config-interval=1',
    ]
    return '( ' + ' ! '.join(parts) + ' )'


def bind(server):
    """Create the listening source, retrying while the port is still held by a dead predecessor."""
    deadline = time.monotonic() + BIND_RETRY_SECONDS
    while True:
        try:
            # create_source (unlike attach) reports *why* binding failed.
            return server.create_source(None)
        except GLib.Error as e:
            if time.monotonic() >= deadline:
                raise
            print(f'bind failed ({e.message}); retrying', file=sys.stderr, flush=True)
            time.sleep(0.2)


def main():
    a = parse_args()
    Gst.init(None)

    server = GstRtspServer.RTSPServer()
    server.set_address(HOST)
    server.set_service(str(a.port))

    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(launch_line(a))
    # One pipeline for all clients, like a camera: a second viewer doesn't start a second encoder.
    factory.set_shared(True)
    server.get_mount_points().add_factory(a.path, factory)

    loop = GLib.MainLoop()

    def quit_loop(*_):
        loop.quit()
        return GLib.SOURCE_REMOVE

    for sig in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_HIGH, sig, quit_loop)

    if a.exit_on_stdin_eof:
        def on_stdin(channel, _cond):
            try:
                data = os.read(channel.unix_get_fd(), 4096)
            except OSError:
                data = b''
            if not data:
                return quit_loop()
            return GLib.SOURCE_CONTINUE
        channel = GLib.IOChannel.unix_new(sys.stdin.fileno())
        GLib.io_add_watch(channel, GLib.PRIORITY_DEFAULT, GLib.IO_IN | GLib.IO_HUP | GLib.IO_ERR, on_stdin)

    try:
        source = bind(server)
    except GLib.Error as e:
        print(f'cannot listen on {HOST}:{a.port}: {e.message}', file=sys.stderr, flush=True)
        return 1
    source.attach(None)

    print(f'READY rtsp://{HOST}:{server.get_bound_port()}{a.path}', flush=True)
    loop.run()
    source.destroy()
    return 0


if __name__ == '__main__':
    sys.exit(main())
