"""Snapshots and their content-addressed blobs."""

from fastapi import APIRouter

router = APIRouter(tags=["snapshots"])
