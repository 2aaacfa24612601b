"""Video: PyAV decode/encode (io), parallel stylisation (stylize), flow / warping error / stabilisation (temporal).

Heavy backends (av, cv2, onnxruntime, ray) are imported inside the functions that use them.
"""

from toolkit.video.io import VIDEO_SUFFIXES, VideoInfo, VideoWriter, is_video_path, probe, read_frames
from toolkit.video.stylize import FrameStylizer, ModelPayload, make_payload, stylize_video

__all__ = ["VIDEO_SUFFIXES", "FrameStylizer", "ModelPayload", "VideoInfo", "VideoWriter", "is_video_path",
           "make_payload", "probe", "read_frames", "stylize_video"]
