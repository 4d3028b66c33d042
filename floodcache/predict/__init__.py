"""The `predict` command: a fine-tuned decoder used on new images, routed by what they are
(`run.run_predict`): one at a time with any prompt (`segmenter.run_predict_photo`) or a folder
of them prompt-free (`folder.run_predict_folder`); on georeferenced scenes tile by tile
(`scene.run_predict_scene`, `scene_folder`: `tiles`, `geotiff`, `polygons`); its configs
(`config`), its output folders' record and table (`output_folder`).

Above `train` (it loads run folders) and `sam`; `bench` times it."""
