"""Small files in packs: content-addressed tars that plain ``tar`` reads, and their catalog.

Names, under the vault's root, beside the checksums' keys (``ab/cd/efgh/ijklmnop/...``)::

    vault.json                              the config (``config``): packing, sizes, shards
    packs/<sha256 of the pack>.tar          a pack (``pack``): a pax tar, one member per
                                            checksum, named by its key
    index/<shard>/pack-<pack sha256>.idx    a pack's members in one shard (``catalog``)
    index/<shard>/merged-<sha256>.idx       several of one shard's, merged by compaction
    index/<shard>/merged-<sha256>.fence     every 1,024th line of it (``fence``)

Each begins with a letter that is not a hex digit, so no checksum's key is one of them and
no listing by a key's prefix meets them. A vault without ``vault.json`` is the plain layout.

Sizes. Files strictly below ``pack_below`` (1 MiB; at most half the target) are packed;
the rest stay plain objects. A pack is closed once it holds ``pack_target`` (64 MiB;
32 MiB to 2 GiB); a run's last pack joins the one before if under half of that, so no pack
but a run's only one is under the target, and none passes 5 GiB, one PUT whose
ChecksumSHA256 the store checks. A member costs a 512-byte header and its padding.

Shards. The catalog is sharded by the checksum's first hex digit (16 shards): planning a
manifest reads only its shards' index objects, and a pack adds at most one object per
shard. Requests to archive 100,000 files of 4 KiB (460.8 MB packed, 7 packs of 64 MiB):

- packs: 7 PUTs (70 in 8 MiB parts);
- indexes: 7 x 16 = 112 PUTs, some 70 KB each (a line is about 80 bytes);
- total 119 to 182 requests, against 100,000 PUTs for plain objects: 0.12 to 0.18 %.
  Two digits (256 shards) would cost 1,792 index PUTs, 1.8 %: too many.

A fetch reads the index objects of its checksums' shards (one per shard once compacted;
for a few checksums, its fence and one ranged read of some 80 KB of it instead), then each
pack's wanted members by ranged GETs, coalesced (``pack.coalesce``): members less than
1 MiB apart share a GET, so a whole tree costs one GET per pack; an empty member costs
none. Every member is verified by its sha256 as it is copied out.

Durability. A pack is written first; a checksum is in the vault once its shard's index
object naming that pack is written. A pack with no index object is a leftover: its files
are packed again. Nothing here talks to a store: the callers move the bytes.
"""
