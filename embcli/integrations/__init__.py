"""Optional engines that run embcli's core across machines (DESIGN §8).

``embedjob`` is engine-neutral: it cuts inputs into parts, embeds one part into
one file, and publishes the job's ``_manifest.json``. ``ray`` runs those parts
on a Ray cluster and gives Ray Data its ``Embedder``; it imports Ray only when
used (the ``embcli[ray]`` extra), and nothing below this layer imports it.
"""
