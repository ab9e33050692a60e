"""The prepared images travel once per node: pickled out of band, never copied into each run."""

from __future__ import annotations

import pickle

import numpy as np

from cce_bench.data.labeled import PreparedData

#: 100 MB of images: 2100 uint8 images of 128 x 128 x 3 (roughly a tenth of HAM10000 at 224 px).
N_IMAGES, SIZE = 2100, 128


def memmapped_prepared_data(folder) -> PreparedData:
    """A ``PreparedData`` whose images are memory-mapped from disk, as the decoded cache gives."""
    path = folder / "images.npy"
    images = np.lib.format.open_memmap(
        path, mode="w+", dtype=np.uint8, shape=(N_IMAGES, SIZE, SIZE, 3)
    )
    images[:] = 7
    images.flush()
    labels = np.arange(N_IMAGES) % 7
    return PreparedData(
        images=np.load(path, mmap_mode="r"),
        labels=labels,
        image_ids=np.array([f"img{i}" for i in range(N_IMAGES)]),
        group_ids=np.array([f"lesion{i}" for i in range(N_IMAGES)]),
        class_names=("a", "b", "c", "d", "e", "f", "g"),
        parts={"train": np.arange(N_IMAGES, dtype=np.int64)},
    )


def test_a_100_mb_prepared_dataset_keeps_under_1_mb_in_band_with_pickle_protocol_5(tmp_path):
    data = memmapped_prepared_data(tmp_path)
    assert data.images.nbytes >= 100 * 10**6
    buffers: list[pickle.PickleBuffer] = []
    in_band = pickle.dumps(data, protocol=5, buffer_callback=buffers.append)
    assert len(in_band) < 2**20
    assert sum(memoryview(buffer).nbytes for buffer in buffers) >= data.images.nbytes


def test_prepared_data_unpickled_from_out_of_band_buffers_is_the_same(tmp_path):
    data = memmapped_prepared_data(tmp_path)
    buffers: list[pickle.PickleBuffer] = []
    copy = pickle.loads(
        pickle.dumps(data, protocol=5, buffer_callback=buffers.append), buffers=buffers
    )
    assert np.array_equal(copy.images, data.images) and copy.class_names == data.class_names
    assert np.array_equal(copy.parts["train"], data.parts["train"])
