import pytest

from kernels.tiling import Tile, batches, effective_tile_size, plan_tiles, squares


def test_cores_cover_the_grid_exactly_once():
    tiles = plan_tiles(1100, 700, 512, 64)
    covered = [[0] * 1100 for _ in range(700)]
    for t in tiles:
        for r in range(t.core_row, t.core_row + t.core_height):
            for c in range(t.core_col, t.core_col + t.core_width):
                covered[r][c] += 1
    assert all(v == 1 for row in covered for v in row)
    assert len(tiles) == 3 * 2


def test_read_window_is_core_plus_halo_and_fixed_size():
    tiles = plan_tiles(1100, 700, 512, 64)
    assert {t.size for t in tiles} == {640}
    last = tiles[-1]
    assert (last.core_col, last.core_row, last.core_width, last.core_height) == (1024, 512, 76, 188)
    assert (last.col, last.row) == (960, 448)
    rows, cols = last.core_slices()
    assert (rows.start, rows.stop, cols.start, cols.stop) == (64, 64 + 188, 64, 64 + 76)


def test_each_point_has_exactly_one_owner():
    tiles = plan_tiles(1000, 1000, 256, 32)
    for x, y in [(0, 0), (255.99, 256.0), (256.0, 255.5), (999.9, 999.9), (511.5, 768.0)]:
        assert sum(t.owns(x, y) for t in tiles) == 1
    assert not any(t.owns(1000.0, 5.0) for t in tiles)


def test_small_scene_shrinks_the_tile():
    assert effective_tile_size(512, 100, 90) == 128
    tiles = plan_tiles(100, 90, 512, 64)
    assert len(tiles) == 1 and tiles[0].size == 128 + 128


@pytest.mark.parametrize("tile,halo", [(500, 64), (512, 10), (512, -16)])
def test_bad_sizes_are_refused(tile, halo):
    with pytest.raises(ValueError):
        plan_tiles(1000, 1000, tile, halo)


def test_batches_keep_order_and_size():
    tiles = plan_tiles(2048, 1024, 512, 64)
    groups = batches(tiles, 3)
    assert [len(g) for g in groups] == [3, 3, 2]
    assert [t.index for g in groups for t in g] == list(range(8))
    assert isinstance(groups[0][0], Tile)


def test_squares_group_tiles_by_the_square_their_core_starts_in():
    tiles = plan_tiles(1100, 700, 256, 32)  # 5 x 3 cores, the last row and column cut short
    groups = squares(tiles, 512)
    assert [[t.index for t in g] for g in groups] == [[0, 1, 5, 6], [2, 3, 7, 8], [4, 9], [10, 11], [12, 13], [14]]
    assert sorted(t.index for g in groups for t in g) == list(range(len(tiles)))
    # a side that is no multiple of the tile still puts every tile in exactly one group
    assert sorted(t.index for g in squares(tiles, 384) for t in g) == list(range(len(tiles)))
    with pytest.raises(ValueError):
        squares(tiles, 0)


def test_model_calls_are_as_few_as_the_batch_allows_and_about_equal():
    from service.tile_tasks import model_calls

    assert model_calls(list(range(16)), 8) == [list(range(8)), list(range(8, 16))]
    assert [len(c) for c in model_calls(list(range(9)), 6)] == [5, 4]
    assert [len(c) for c in model_calls(list(range(5)), None)] == [5]
    assert model_calls([], 8) == []


def test_tasks_are_squares_of_two_cpu_calls_or_one_cuda_call():
    from service.pipeline import DetectOptions, task_tiles

    tiles = plan_tiles(5000, 5000, 256, 32)  # 20 x 20 tiles
    cpu = task_tiles(tiles, DetectOptions(), 256, 8, "cpu")
    assert len(cpu) == 25 and {len(g) for g in cpu} == {16}
    assert {(t.core_col // 1024, t.core_row // 1024) for t in cpu[1]} == {(1, 0)}  # a 4 x 4 square
    cuda = task_tiles(tiles, DetectOptions(), 256, 104, "cuda")
    assert len(cuda) == 4 and {len(g) for g in cuda} == {100}
    # a task tile no larger than the model's: runs of one call
    assert [len(g) for g in task_tiles(tiles, DetectOptions(tile=256), 256, 8, "cpu")] == [8] * 50
