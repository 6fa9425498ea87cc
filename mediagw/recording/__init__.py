"""Call recording: the chunked writer and manifest, crash recovery, the durable export queue and retention.

* :mod:`mediagw.recording.writer`: ``RecordingWriter`` (20 ms frames in, chunk files out) and ``recover``;
* :mod:`mediagw.recording.manifest`: the per-recording JSON manifest, written atomically;
* :mod:`mediagw.recording.export`: ``ExportQueue`` (sans-clock core, in the store) and ``Exporter``;
* :mod:`mediagw.recording.targets`: ``DirectoryTarget``, ``HttpTarget``, ``S3Target``;
* :mod:`mediagw.recording.retention`: ``RetentionPolicy`` and ``RetentionService``.

This package imports nothing heavy itself; import the submodules you need.
"""
