set -e
python3 -m voxtral_desktop make-tiny /tmp/tiny --format gguf >/dev/null
python3 - <<'PY'
import numpy as np, wave
rng = np.random.default_rng(0)
for i in range(12):
    n = int(16000 * (4 + 3 * i))
    a = (0.1 * rng.standard_normal(n)).astype(np.float32)
    with wave.open(f"/tmp/f{i:02d}.wav", "wb") as w:
        w.setnchannels(1); w.setsampwidth(2); w.setframerate(16000)
        w.writeframes((a * 32767).astype(np.int16).tobytes())
PY
time python3 -m voxtral_desktop -v transcribe /tmp/f*.wav --model /tmp/tiny/tiny-q4.gguf --device cuda --segment-seconds 2 -f json > /tmp/multi.jsonl
python3 - <<'PY'
import json
multi = [json.loads(l) for l in open("/tmp/multi.jsonl")]
print("files:", len(multi), "durations:", [m["duration_s"] for m in multi], "tokens:", [len(m["tokens"]) for m in multi])
PY
