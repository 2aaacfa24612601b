plugins {
    id("com.android.application")
    id("org.jetbrains.kotlin.android")
}

// Styles come from the toolkit's exports: every exported/<style>/<file>.tflite with its .contract.json beside it
// is copied (flat) into the app's assets under styles/. Override the folder with -PexportedDir=/path/to/exported.
val exportedDir = rootProject.file(providers.gradleProperty("exportedDir").getOrElse("../exported"))
val styleAssets = layout.buildDirectory.dir("generated/styleAssets")
val syncStyles by tasks.registering(Sync::class) {
    from(exportedDir) {
        include("*/*.tflite", "*/*.tflite.contract.json")
        eachFile { path = "styles/$name" }
    }
    includeEmptyDirs = false
    into(styleAssets)
}

android {
    namespace = "com.toolkit.styledemo"
    compileSdk = 35

    defaultConfig {
        applicationId = "com.toolkit.styledemo"
        minSdk = 24
        targetSdk = 35
        versionCode = 1
        versionName = "0.1.0"
    }
    buildTypes {
        release {
            isMinifyEnabled = false
        }
    }
    compileOptions {
        sourceCompatibility = JavaVersion.VERSION_17
        targetCompatibility = JavaVersion.VERSION_17
    }
    kotlinOptions {
        jvmTarget = "17"
    }
    sourceSets["main"].assets.srcDir(styleAssets)
    androidResources {
        noCompress += "tflite"   // memory-mapped straight from the APK
    }
    buildFeatures {
        viewBinding = false
    }
}

tasks.named("preBuild") { dependsOn(syncStyles) }

dependencies {
    val camerax = "1.4.1"
    val litert = "1.4.0"
    implementation("androidx.core:core-ktx:1.13.1")
    implementation("androidx.appcompat:appcompat:1.7.0")
    implementation("androidx.lifecycle:lifecycle-runtime-ktx:2.8.7")
    implementation("androidx.camera:camera-core:$camerax")
    implementation("androidx.camera:camera-camera2:$camerax")
    implementation("androidx.camera:camera-lifecycle:$camerax")
    implementation("androidx.camera:camera-view:$camerax")
    // LiteRT (the TensorFlow Lite runtime, renamed): Interpreter API + GPU delegate.
    implementation("com.google.ai.edge.litert:litert:$litert")
    implementation("com.google.ai.edge.litert:litert-gpu:$litert")
    implementation("com.google.ai.edge.litert:litert-gpu-api:$litert")
}
