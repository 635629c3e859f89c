"""Connections shared by the server and the migration command."""

import os

import psycopg2
import redis


def database():
    return psycopg2.connect(
        host=os.environ["DATABASE_HOST"],
        user=os.environ["POSTGRES_USER"],
        password=os.environ["POSTGRES_PASSWORD"],
        dbname=os.environ["POSTGRES_DB"],
        connect_timeout=3,
    )


def cache():
    return redis.Redis(
        host=os.environ["REDIS_HOST"],
        password=os.environ["REDIS_PASSWORD"],
        socket_timeout=3,
        socket_connect_timeout=3,
    )
