package com.toolkit.styledemo

import android.Manifest
import android.content.pm.PackageManager
import android.os.Bundle
import android.os.SystemClock
import android.view.View
import android.widget.AdapterView
import android.widget.ArrayAdapter
import android.widget.ImageView
import android.widget.Spinner
import android.widget.TextView
import android.widget.Toast
import androidx.activity.result.contract.ActivityResultContracts
import androidx.appcompat.app.AppCompatActivity
import androidx.camera.core.CameraSelector
import androidx.camera.core.ImageAnalysis
import androidx.camera.core.ImageProxy
import androidx.camera.core.Preview
import androidx.camera.lifecycle.ProcessCameraProvider
import androidx.camera.view.PreviewView
import androidx.core.content.ContextCompat
import java.util.concurrent.ExecutorService
import java.util.concurrent.Executors

/** CameraX frames -> the picked style in LiteRT -> full-screen stylised preview with an fps counter. */
class MainActivity : AppCompatActivity() {
    private lateinit var stylised: ImageView
    private lateinit var fpsView: TextView
    private lateinit var catalog: StyleCatalog
    private val analysis: ExecutorService = Executors.newSingleThreadExecutor()

    // Touched only on the analysis thread.
    private var model: StyleModel? = null
    private var modelFile: String? = null
    private var fps = FpsMeter()

    @Volatile private var picked: String? = null

    private val askCamera = registerForActivityResult(ActivityResultContracts.RequestPermission()) { granted ->
        if (granted) startCamera() else Toast.makeText(this, R.string.camera_denied, Toast.LENGTH_LONG).show()
    }

    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        setContentView(R.layout.activity_main)
        stylised = findViewById(R.id.stylised)
        fpsView = findViewById(R.id.fps)
        catalog = StyleCatalog(assets)
        if (catalog.names.isEmpty()) {
            fpsView.setText(R.string.no_styles)
            return
        }
        val spinner = findViewById<Spinner>(R.id.styles)
        spinner.adapter = ArrayAdapter(this, android.R.layout.simple_spinner_dropdown_item, catalog.names)
        spinner.onItemSelectedListener = object : AdapterView.OnItemSelectedListener {
            override fun onItemSelected(parent: AdapterView<*>?, view: View?, position: Int, id: Long) {
                picked = catalog.names[position]
            }
            override fun onNothingSelected(parent: AdapterView<*>?) = Unit
        }
        picked = catalog.names.first()
        if (ContextCompat.checkSelfPermission(this, Manifest.permission.CAMERA) == PackageManager.PERMISSION_GRANTED) {
            startCamera()
        } else {
            askCamera.launch(Manifest.permission.CAMERA)
        }
    }

    private fun startCamera() {
        val providerFuture = ProcessCameraProvider.getInstance(this)
        providerFuture.addListener({
            val provider = providerFuture.get()
            val preview = Preview.Builder().build().also {
                it.setSurfaceProvider(findViewById<PreviewView>(R.id.preview).surfaceProvider)
            }
            val frames = ImageAnalysis.Builder()
                .setBackpressureStrategy(ImageAnalysis.STRATEGY_KEEP_ONLY_LATEST)  // drop frames, never queue
                .setOutputImageFormat(ImageAnalysis.OUTPUT_IMAGE_FORMAT_RGBA_8888)
                .build()
                .also { it.setAnalyzer(analysis, ::onFrame) }
            provider.unbindAll()
            provider.bindToLifecycle(this, CameraSelector.DEFAULT_BACK_CAMERA, preview, frames)
        }, ContextCompat.getMainExecutor(this))
    }

    private fun onFrame(image: ImageProxy) {
        image.use { frame ->
            val name = picked ?: return
            val rotation = frame.imageInfo.rotationDegrees
            val (h, w) = if (rotation % 180 == 0) frame.height to frame.width else frame.width to frame.height
            val entry = catalog.best(name, h, w)
            val current = model?.takeIf { modelFile == entry.assetPath } ?: try {
                model?.close()
                StyleModel(this, entry.contract, entry.assetPath).also { loaded ->
                    model = loaded
                    modelFile = entry.assetPath
                    fps = FpsMeter()
                }
            } catch (e: Exception) {
                model = null
                modelFile = null
                runOnUiThread { fpsView.text = "cannot load ${entry.contract.file}: ${e.message}" }
                return
            }
            val out = current.stylise(frame.toBitmap(), rotation)
            val rate = fps.tick(SystemClock.elapsedRealtimeNanos())
            val label = "%.1f fps · %s · %dx%d".format(rate, current.backend, current.width, current.height)
            runOnUiThread {
                stylised.setImageBitmap(out)
                fpsView.text = label
            }
        }
    }

    override fun onDestroy() {
        super.onDestroy()
        analysis.execute { model?.close(); model = null }
        analysis.shutdown()
    }
}

/** Frames per second over a sliding window of the last [window] frames. */
class FpsMeter(private val window: Int = 30) {
    private val times = ArrayDeque<Long>()

    fun tick(nowNanos: Long): Double {
        times.addLast(nowNanos)
        if (times.size > window) times.removeFirst()
        if (times.size < 2) return 0.0
        return (times.size - 1) * 1e9 / (times.last() - times.first())
    }
}
