"""What the test layers share: one module a topic.

paths (repo folders, example images), keys (distinctive API keys), servers (the local server as a subprocess,
fixture bodies, the one job a server holds), children (a fixture body that starts child processes and closes
them all), sockets (closed ports, listeners that never answer), folders (folders that refuse writes),
clients (a fast-retrying ModelsLabClient), tls (a test CA), shipping (what the add-on zip holds),
reliability (a JobRunner in a throwaway folder and the checks a fault case ends with), blender (run a Blender
process and read its driver's result; bpy scenarios), gui (Debian's Blender in an Xvfb window),
batch (scripts/batch.py as a subprocess).

Every module imports only the stdlib and the repo at module level, so the dev venv and the bpy venvs can import
each of them; the ones that need more (clients: requests, tls: cryptography) say so.
"""
