-- First start of the compose PostgreSQL: one database per service (each keeps its own sqlx
-- migration history, so they must not share one).
CREATE DATABASE signing;
CREATE DATABASE devices;
