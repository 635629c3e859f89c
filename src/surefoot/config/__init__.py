"""The project as its files say: surefoot.toml validated (settings, values, probes), the compose
files found (project), the Dockerfiles and .dockerignore files read, the env file configured."""
