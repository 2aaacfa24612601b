package com.toolkit.styledemo

import android.graphics.Bitmap
import android.graphics.Matrix
import org.json.JSONArray
import org.json.JSONObject
import java.nio.ByteBuffer
import java.nio.ByteOrder
import kotlin.math.abs
import kotlin.math.floor
import kotlin.math.ln
import kotlin.math.min
import kotlin.math.roundToInt

/**
 * ALL image pre/post-processing of the app, driven by the model contract `<artifact>.contract.json` written by
 * the toolkit exporter (toolkit/export/contract.py; same field names here, in the iOS and in the web demo):
 *
 *   pre:  value = (pixel * scale - mean[c]) / std[c]        (pixel 0..255, RGB)
 *   post: pixel = clamp(round((value - range[0]) / (range[1] - range[0]) * 255), 0, 255)
 *
 * Layout NHWC (what the TFLite export uses) or NCHW; dtype float32, or int8 (TFLite int8 exports quantise the
 * input: q = clamp(round(value / quantization.scale) + quantization.zero_point, -128, 127)). Output float32.
 */
data class TensorContract(
    val name: String,
    val layout: String,          // "NCHW" | "NHWC"
    val dtype: String,           // "float32"
    val color: String,           // "RGB"
    val range: FloatArray,       // value range the net sees / produces
)

data class InputContract(
    val tensor: TensorContract,
    val dynamic: Boolean,
    val sizes: List<Pair<Int, Int>>,   // (height, width) the artifact accepts when not dynamic
    val sizeMultiple: Int,             // for dynamic inputs: both sides must be multiples of this
    val scale: Float,
    val mean: FloatArray,
    val std: FloatArray,
    val quantization: Quantization?,   // present when dtype is int8
)

data class Quantization(val scale: Float, val zeroPoint: Int)

data class ImageContract(
    val style: String,
    val target: String,
    val precision: String,
    val file: String,
    val input: InputContract,
    val output: TensorContract,
) {
    /** The (height, width) to run at for a frame of srcHeight x srcWidth (already upright). */
    fun inferenceSize(srcHeight: Int, srcWidth: Int, maxSide: Int = 512): Pair<Int, Int> {
        if (!input.dynamic) {
            val aspect = srcWidth.toDouble() / srcHeight
            return input.sizes.minBy { (h, w) -> abs(ln(w.toDouble() / h / aspect)) }
        }
        val m = input.sizeMultiple
        val k = min(1.0, maxSide.toDouble() / maxOf(srcHeight, srcWidth))
        fun snap(v: Int) = maxOf(m, (floor(v * k / m) * m).toInt())
        return snap(srcHeight) to snap(srcWidth)
    }

    /** Rotate a camera frame upright and scale it to (height, width): the one geometric step before the net. */
    fun fitFrame(frame: Bitmap, rotationDegrees: Int, height: Int, width: Int): Bitmap {
        val upright = rotationDegrees % 180 == 0
        val (srcW, srcH) = if (upright) frame.width to frame.height else frame.height to frame.width
        val matrix = Matrix().apply {
            postRotate(rotationDegrees.toFloat())
            postScale(width.toFloat() / srcW, height.toFloat() / srcH)
        }
        val fitted = Bitmap.createBitmap(frame, 0, 0, frame.width, frame.height, matrix, true)
        // createBitmap rounds; make the size exact (a no-op copy when it already is).
        return if (fitted.width == width && fitted.height == height) fitted
        else Bitmap.createScaledBitmap(fitted, width, height, true)
    }

    fun inputBytes(height: Int, width: Int): Int = (if (input.tensor.dtype == "int8") 1 else 4) * 3 * height * width

    fun outputBytes(height: Int, width: Int): Int = 4 * 3 * height * width

    /** ARGB bitmap of (height, width) -> float32 tensor in `buffer` (direct, native order), per the contract. */
    fun preprocess(bitmap: Bitmap, buffer: ByteBuffer, pixels: IntArray = IntArray(bitmap.width * bitmap.height)) {
        val w = bitmap.width
        val h = bitmap.height
        val n = w * h
        bitmap.getPixels(pixels, 0, w, 0, 0, w, h)
        val a = FloatArray(3) { input.scale / input.std[it] }
        val b = FloatArray(3) { -input.mean[it] / input.std[it] }
        val q = input.quantization
        if (q != null) {  // int8: quantise the same values; index order follows the layout
            buffer.rewind()
            fun put(index: Int, value: Float) {
                buffer.put(index, ((value / q.scale).roundToInt() + q.zeroPoint).coerceIn(-128, 127).toByte())
            }
            for (i in 0 until n) {
                val p = pixels[i]
                for (c in 0 until 3) {
                    val v = ((p shr (16 - 8 * c)) and 0xFF) * a[c] + b[c]
                    put(if (input.tensor.layout == "NHWC") 3 * i + c else c * n + i, v)
                }
            }
            return
        }
        val floats = buffer.order(ByteOrder.nativeOrder()).asFloatBuffer()
        floats.rewind()
        if (input.tensor.layout == "NHWC") {
            for (i in 0 until n) {
                val p = pixels[i]
                floats.put(((p shr 16) and 0xFF) * a[0] + b[0])
                floats.put(((p shr 8) and 0xFF) * a[1] + b[1])
                floats.put((p and 0xFF) * a[2] + b[2])
            }
        } else {
            for (i in 0 until n) floats.put(i, ((pixels[i] shr 16) and 0xFF) * a[0] + b[0])
            for (i in 0 until n) floats.put(n + i, ((pixels[i] shr 8) and 0xFF) * a[1] + b[1])
            for (i in 0 until n) floats.put(2 * n + i, (pixels[i] and 0xFF) * a[2] + b[2])
        }
        buffer.rewind()
    }

    /** float32 output tensor in `buffer` -> opaque ARGB bitmap of (height, width), per the contract. */
    fun postprocess(buffer: ByteBuffer, height: Int, width: Int,
                    pixels: IntArray = IntArray(width * height)): Bitmap {
        val n = width * height
        val lo = output.range[0]
        val k = 255f / (output.range[1] - lo)
        val floats = buffer.order(ByteOrder.nativeOrder()).asFloatBuffer()
        fun byte(v: Float): Int = ((v - lo) * k).roundToInt().coerceIn(0, 255)
        val nhwc = output.layout == "NHWC"
        for (i in 0 until n) {
            val r = byte(if (nhwc) floats.get(3 * i) else floats.get(i))
            val g = byte(if (nhwc) floats.get(3 * i + 1) else floats.get(n + i))
            val bl = byte(if (nhwc) floats.get(3 * i + 2) else floats.get(2 * n + i))
            pixels[i] = (0xFF shl 24) or (r shl 16) or (g shl 8) or bl
        }
        buffer.rewind()
        return Bitmap.createBitmap(pixels, width, height, Bitmap.Config.ARGB_8888)
    }

    companion object {
        const val VERSION = 1

        /** Parse and check a contract; anything this app cannot feed is an error naming the field. */
        fun parse(json: String): ImageContract {
            val root = JSONObject(json)
            require(root.getInt("contract") == VERSION) { "contract version ${root.getInt("contract")}, expected $VERSION" }
            val inp = root.getJSONObject("input")
            val contract = ImageContract(
                style = root.getString("style"),
                target = root.getString("target"),
                precision = root.getString("precision"),
                file = root.getString("file"),
                input = InputContract(
                    tensor = tensor(inp),
                    dynamic = inp.getBoolean("dynamic"),
                    sizes = inp.getJSONArray("sizes").let { s ->
                        (0 until s.length()).map { s.getJSONArray(it).getInt(0) to s.getJSONArray(it).getInt(1) }
                    },
                    sizeMultiple = inp.getInt("size_multiple"),
                    scale = inp.getDouble("scale").toFloat(),
                    mean = floats(inp.getJSONArray("mean")),
                    std = floats(inp.getJSONArray("std")),
                    quantization = inp.optJSONObject("quantization")?.let {
                        Quantization(it.getDouble("scale").toFloat(), it.getInt("zero_point"))
                    },
                ),
                output = tensor(root.getJSONObject("output")),
            )
            val inDtype = contract.input.tensor.dtype
            require(inDtype == "float32" || (inDtype == "int8" && contract.input.quantization != null)) {
                "input dtype $inDtype: this app feeds float32, or int8 with quantization parameters"
            }
            require(contract.output.dtype == "float32") { "output dtype ${contract.output.dtype}: expected float32" }
            for (t in listOf(contract.input.tensor, contract.output)) {
                require(t.layout == "NHWC" || t.layout == "NCHW") { "${t.name}: layout ${t.layout} is not a tensor layout" }
                require(t.color == "RGB") { "${t.name}: colour ${t.color}, this app feeds RGB" }
            }
            require(contract.input.dynamic || contract.input.sizes.isNotEmpty()) { "fixed-size input lists no sizes" }
            return contract
        }

        private fun tensor(o: JSONObject) = TensorContract(
            name = o.getString("name"),
            layout = o.getString("layout"),
            dtype = o.getString("dtype"),
            color = o.getString("color"),
            range = floats(o.getJSONArray("range")),
        )

        private fun floats(a: JSONArray) = FloatArray(a.length()) { a.getDouble(it).toFloat() }
    }
}
