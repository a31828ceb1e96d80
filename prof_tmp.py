import os, sys, tempfile, time, cProfile, pstats, io
from pathlib import Path
from testing.harness import DatabaseServer
w = Path(tempfile.mkdtemp())
db = DatabaseServer(w / "db"); db.start()
os.environ["MONGODB_CONNECTION_STRING"] = db.uri("prof")
os.environ["UPLOADS_DIRECTORY"] = str(w / "up"); (w / "up").mkdir()
os.environ["DATA_DIRECTORY"] = str(w / "data")
os.environ["DJANGO_SETTINGS_MODULE"] = "imagestore.settings"
os.environ["LOG_LEVEL"] = "WARNING"
import django; django.setup()
from django.test import Client
c = Client()
from benchmarks import payloads
jpeg = payloads.jpeg_of_about()
import io as _io
r = c.post("/images", {"image": ("a.jpg", _io.BytesIO(jpeg)), "json": '{"file":"a.jpg","data":{"camera":"cam1"}}'})
f = _io.BytesIO(jpeg); f.name = "a.jpg"
r = c.post("/images", {"image": f, "json": '{"file":"a.jpg","data":{"camera":"cam1"}}'})
print(r.status_code, r.content[:200])
iid = r.json()["_id"]
path = f"/images/{iid}"
for _ in range(300): c.get(path)
N = int(sys.argv[1]) if len(sys.argv) > 1 else 3000
t = time.process_time()
for _ in range(N): c.get(path)
print("get one CPU ms/req", (time.process_time() - t) / N * 1000)
from pymongo import MongoClient
col = MongoClient(db.uri("prof")).get_default_database()["images"]
from bson import ObjectId
t = time.process_time()
for _ in range(N): col.find_one({"_id": ObjectId(iid)})
print("find_one CPU ms", (time.process_time() - t) / N * 1000)
pr = cProfile.Profile(); pr.enable()
for _ in range(N): c.get(path)
pr.disable()
s = io.StringIO(); pstats.Stats(pr, stream=s).sort_stats("cumulative").print_stats(45); print(s.getvalue()[:9000])
db.stop()
