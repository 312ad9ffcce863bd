"""Transcription split across processes (torchrun, accelerate launch) and resumable after a kill.

    torchrun --nproc_per_node 2 -m whisper_lora transcribe --model M --audio_list list.txt --output_file out.json
    torchrun --nproc_per_node 2 -m whisper_lora transcribe ... --output_file out.json --resume   # after a kill

Under a distributed launch (WORLD_SIZE > 1 in the environment) every process ("rank") takes a
share of the file list, balanced by audio duration, and runs on its own device (cuda:LOCAL_RANK
where there are GPUs, else the CPU). Each rank appends every FileResult, as one JSON line with its
input index, to a part file of its own in OUTPUT.parts/, flushed per line, so a killed job keeps
every file it finished. When every rank is done, rank 0 writes the one output file in input
order with the normal writer and removes the parts.

--resume reads the parts a killed run left (a torn last line is ignored), skips the files they
hold and does the rest; single-process runs with --resume keep parts the same way. The folder's
header.json records the file list's hash, the model and the options, and a mismatch is refused:
a part from another run is never silently reused. Files that failed (error entries) are tried again.

A file's text can depend on the files decoded before and beside it in the same process: the
temperature fallback samples from the process's random state, and packing and int8 activation
scales couple the files of a window or batch. Files Whisper is sure of come out as one process
writes them; the ones it is unsure of may be worded differently, as with another --batch_size.

The parts folder must be on a filesystem every rank sees, as the audio already is. Ranks talk
over gloo whatever their device: they exchange only a few small Python objects (the done list,
durations, a status), never tensors, so gloo works on every machine and needs no device setup.

The package in three parts: ranks.py (the launch the environment describes, each rank's device,
the few collective steps), parts.py (the parts folder: header, part files, what is done) and
run.py (a rank's share, its part file, rank 0's output). The front door is
transcribe.run_transcription: a single-process run without --resume never comes here.
"""

from .parts import PartsFolder, ShardError, parts_folder_for, run_header
from .ranks import Launch, launch_from_env
from .run import split_by_duration, transcribe_sharded

__all__ = ["Launch", "launch_from_env", "split_by_duration", "PartsFolder", "ShardError", "parts_folder_for",
           "run_header", "transcribe_sharded"]
