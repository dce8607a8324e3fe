"""Video encode (writers) and decode (readers) with PyAV.

Decoding keeps one open container per file per worker process and remembers the last decoded
timestamp, so frames requested in increasing time order (a sequential scan, or the next sample of the
same episode) are decoded forward without a seek; a backward or far jump seeks to the previous keyframe.
"""

from __future__ import annotations

from collections import OrderedDict

import av
import numpy as np

from .errors import DataError


class CorruptMediaError(DataError):
    """A video or image that cannot be decoded; the sample is skipped (or the run stops in strict mode)."""


class FrameTimestampError(DataError, ValueError):
    """No frame within the timestamp tolerance of a requested time: the dataset's timestamps and its
    videos disagree (never skipped: it would silently train on the wrong frames)."""


def encode_video(path: str, frames: np.ndarray, fps: int, codec: str = "libx264", crf: int = 12, gop: int = 2) -> None:
    """Write uint8 frames (T, H, W, 3) as an mp4 with frame i at time i / fps (yuv420p, H and W even)."""
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"{path}: frames must be uint8 (T, H, W, 3), got {frames.dtype} {frames.shape}")
    height, width = frames.shape[1:3]
    if height % 2 or width % 2:
        raise ValueError(f"{path}: yuv420p video needs even height and width, got {height}x{width}")
    with av.open(path, mode="w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        if codec == "libx264":
            stream.options = {"crf": str(crf), "g": str(gop)}
        elif codec == "libx265":  # HEVC with B-frames, as LeRobot's `vcodec="hevc"` writes it
            stream.options = {"crf": str(crf), "x265-params": f"keyint={gop}:bframes=4:log-level=error"}
        else:
            stream.options = {"g": str(gop)}
        for i, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            frame.pts = i
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


class _OpenVideo:
    """One open container, its decoder and the position reached by the last decode."""

    def __init__(self, path: str):
        try:
            self.container = av.open(path)
            self.stream = self.container.streams.video[0]
        except (av.error.FFmpegError, IndexError) as err:
            raise CorruptMediaError(f"cannot open video {path}: {err}") from err
        # No decoder threads: loader workers provide the parallelism, and FFmpeg threads alive in a process
        # that later forks loader workers can deadlock them.
        self.stream.thread_count = 1
        self.time_base = float(self.stream.time_base)
        self.frames = None  # live decode generator
        self.last_time = float("inf")  # timestamp of the last frame produced by ``frames``
        self.last_frame = None

    def close(self) -> None:
        self.container.close()

    def _restart_at(self, time_s: float) -> None:
        self.container.seek(int(time_s / self.time_base), stream=self.stream, backward=True, any_frame=False)
        self.frames = self.container.decode(self.stream)
        self.last_time, self.last_frame = -float("inf"), None


class VideoDecoder:
    """Per-process cache of open videos; ``frames_at`` returns the frames nearest to the timestamps."""

    def __init__(self, max_open: int = 32, tolerance_s: float = 1e-4, forward_window_s: float = 0.25):
        self.max_open = max_open
        """Open containers kept (least recently used ones are closed)."""
        self.tolerance_s = tolerance_s
        """Largest accepted distance between a requested timestamp and the decoded frame's."""
        self.forward_window_s = forward_window_s
        """A request at most this far after the last decoded frame decodes forward instead of seeking
        (consecutive frames of an episode); farther jumps seek to the previous keyframe."""
        self._open: OrderedDict[str, _OpenVideo] = OrderedDict()

    def _get(self, path: str) -> _OpenVideo:
        video = self._open.pop(path, None)
        if video is None:
            video = _OpenVideo(path)
            if len(self._open) >= self.max_open:
                _, oldest = self._open.popitem(last=False)
                oldest.close()
        self._open[path] = video
        return video

    def _drop(self, path: str) -> None:
        video = self._open.pop(path, None)
        if video is not None:
            video.close()

    def frames_at(
        self, path: str, timestamps: list[float], size: tuple[int, int] | None = None
    ) -> list[np.ndarray]:
        """uint8 (H, W, 3) frames at ``timestamps`` (seconds); ``size=(h, w)`` resizes in the decoder."""
        try:
            return [self._frame_at(path, t, size) for t in timestamps]
        except (CorruptMediaError, FrameTimestampError):
            self._drop(path)
            raise
        except (av.error.FFmpegError, StopIteration, ValueError) as err:
            self._drop(path)
            raise CorruptMediaError(f"cannot decode {path} at t={timestamps}: {err}") from err

    def _frame_at(self, path: str, t: float, size: tuple[int, int] | None) -> np.ndarray:
        video = self._get(path)
        tol = self.tolerance_s
        if video.last_frame is not None and abs(video.last_time - t) <= tol:
            return self._to_array(video.last_frame, size)
        seek_to = None
        if not (video.last_time < t <= video.last_time + self.forward_window_s):
            seek_to = t
            video._restart_at(seek_to)
        while True:
            try:
                frame = next(video.frames)
            except StopIteration:
                raise CorruptMediaError(
                    f"{path}: no frame at t={t:.4f}s (video ends at {video.last_time:.4f}s)") from None
            frame_time = frame.pts * video.time_base
            if seek_to is not None and video.last_frame is None and frame_time > t + tol and seek_to > 0:
                # The seek overshot: with B-frames (or HEVC's open GOPs) the demuxer's keyframe for a
                # time can lie after it. Step back further until the first frame is not past t.
                seek_to = max(0.0, t - 2 * max(t - seek_to, 0.5))
                video._restart_at(seek_to)
                continue
            video.last_time, video.last_frame = frame_time, frame
            if frame_time >= t - tol:
                break
        if abs(frame_time - t) > tol:
            raise FrameTimestampError(f"{path}: nearest frame to t={t:.4f}s is at {frame_time:.4f}s, farther than "
                                      f"the timestamp tolerance {tol:g}s (data.timestamp_tolerance_s)")
        return self._to_array(frame, size)

    @staticmethod
    def _to_array(frame: av.VideoFrame, size: tuple[int, int] | None) -> np.ndarray:
        if frame.format.name.startswith("gray"):  # a depth camera, asked for explicitly: three equal channels
            return np.repeat(frame.to_ndarray(format="gray")[..., None], 3, axis=-1)
        if size is None:
            return frame.to_ndarray(format="rgb24")
        return frame.to_ndarray(format="rgb24", height=size[0], width=size[1], interpolation="BILINEAR")
