"""Bounds every reader of untrusted files checks before it allocates (checkpoints, pickles, .npy/.npz, zips).

They are far above any published StyleGAN2 (the largest are 1024 px, 512 channels, w[512], 8 mapping
layers) and low enough that validating a file never needs more memory than the file itself, give or
take the data it really holds. One module, so the README, the readers and the tests agree.
"""

from __future__ import annotations

# --- generator constructor arguments (init_kwargs) --------------------------------------------------------------
MAX_RESOLUTION = 4096        # img_resolution: a power of two, 4 .. 4096
MAX_IMAGE_CHANNELS = 4       # img_channels: grey, RGB or RGBA
MAX_LATENT_DIM = 4096        # z_dim, w_dim, mapping embed_features / layer_features
MAX_LABELS = 65536           # c_dim (class-conditional models)
MAX_CHANNELS = 4096          # synthesis channel_max (feature maps of any block)
MAX_CHANNEL_BASE = 2 ** 24   # synthesis channel_base (block channels are min(channel_base // res, channel_max))
MAX_MAPPING_LAYERS = 32      # mapping num_layers
MAX_KERNEL_SIZE = 7          # synthesis kernel_size (odd)
MAX_FILTER_TAPS = 16         # resample_filter length
MAX_ARG_CHARS = 64           # a string argument (architecture, activation)
MAX_NUM_WS = 64              # ws of a generator (a 1024 px StyleGAN2 has 18) and so of an encoder's heads
MAX_ENCODER_WIDTH = 2048     # an encoder's base, max_width and pyramid channels (morph trains 32, 256, 96)

# --- pickles ----------------------------------------------------------------------------------------------------
MAX_MODULES = 10_000         # persistent modules / TF components under one generator (a 1024 px G_ema has ~150)
MAX_PLAIN_NODES = 10_000     # values plain() converts in one call (constructor arguments, metadata)
MAX_PLAIN_DEPTH = 32         # nesting plain() follows

# --- zip archives (.npz, torch zip checkpoints) ----------------------------------------------------------------
MAX_COMPRESSION_RATIO = 64   # a compressed member may inflate to at most 64x its compressed size ...
MIN_RATIO_CHECKED = 1 << 20  # ... once it inflates to more than 1 MiB (real float data compresses ~1.1x)
MAX_NPY_HEADER = 10_000      # bytes of a .npy header (numpy's own default)

# --- scenes -------------------------------------------------------------------------------------------------------
MAX_SCENE_BYTES = 1 << 20    # a scene file is a short text; anything longer (or /dev/zero) is refused unread
MIN_FPS, MAX_FPS = 1, 240    # frames per second of a render
MIN_SIZE, MAX_SIZE = 16, 8192  # pixels of a render's square frame
MAX_SECONDS = 3600           # any one duration: a hold, a transition, a render's duration, a wave's period
MAX_FRAMES = 216_000         # frames of one render (two hours at 30 fps): planning stays seconds
MAX_STRENGTH = 100.0         # |add strength|, |breathe strength|, |blend weight| (directions are unit vectors)
MAX_AMPLITUDE = 100.0        # deform amplitude (a multiple of the model's real latent spread)
MAX_TRANSLATE = 10.0         # |camera translate| and orbit radius, in image widths
MAX_ROTATE = 3600.0          # |camera rotate| and swing, in degrees (ten turns)
MAX_RENDER_NAME = 100        # characters of a render name (it becomes a file name)

# --- downloads and the studio -------------------------------------------------------------------------------------
MAX_DOWNLOAD_BYTES = 1 << 34  # a downloaded file (16 GiB: the largest published StyleGAN pickles are under 1 GiB)
DOWNLOAD_STALL_BYTES = 1 << 16  # a download that gets fewer bytes than this in DOWNLOAD_STALL_S seconds ...
DOWNLOAD_STALL_S = 60.0       # ... has stalled (a drip of a byte every few seconds never finishes)
MAX_REQUEST_BYTES = 1 << 20   # the body of one studio request (an edit is a few hundred bytes)
MAX_EDIT_DEPTH = 32           # keys in one studio edit's path (a scene nests a handful deep)

# --- command options ----------------------------------------------------------------------------------------------
MAX_BATCH = 4096             # --batch-size
MAX_PREVIEW_FRAMES = 200     # morph preview --frames
MAX_STRIP_STEPS = 64         # morph directions show --steps
MAX_IDENTITY_WEIGHT = 100.0  # morph project --identity-weight and a scene's identity.weight
MAX_PROJECT_STEPS = 100_000  # morph project --steps and a scene's steps: (the recipe's default is 1000)
