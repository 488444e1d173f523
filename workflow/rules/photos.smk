# scikit-image's bundled photos, exported once: the default, offline inputs of DeepDream
# and style transfer.


rule sample_photo:
    input:
        code=code("sample_photo"),
    output:
        "results/photos/{photo}.png",
    log:
        "results/logs/sample_photo/{photo}.log",
    wildcard_constraints:
        photo="|".join(SAMPLE_PHOTOS),
    conda:
        "../envs/cnnpipe.yaml"
    script:
        "../scripts/sample_photo.py"
