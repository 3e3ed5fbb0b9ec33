"""``pianomtl serve``: a local web page for musicians (the ``[web]`` extra).

Open a recording (file picker or drag and drop), watch it being transcribed, see the
piano roll with the sustain pedal, listen to the recording and to the transcription
played on a sampled piano (or both), change the decoder's onset threshold and see the
notes change, download MIDI / CSV / JSON, or let it listen to the microphone and draw
the notes as they are played (:class:`pianomtl.Stream`).

* :mod:`pianomtl.web.server` — the Starlette app (:func:`~pianomtl.web.server.create_app`)
  and the uvicorn runner;
* :mod:`pianomtl.web.sessions` — sessions, their temporary folders, the background
  transcription with progress, re-decoding, downloads (no HTTP in it);
* :mod:`pianomtl.web.piano` — the page's piano samples, rendered on first use into a cache;
* ``static/`` — the page itself: ``index.html``, ``app.js`` (plain JS, canvas, WebAudio),
  ``style.css``. Nothing is loaded from anywhere but the local server.
"""
