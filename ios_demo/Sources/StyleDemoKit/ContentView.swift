import CoreML
import CoreVideo
import QuartzCore
import SwiftUI

/// Frames per second over a sliding window of the last `window` frames.
public struct FpsMeter {
    private var times: [CFTimeInterval] = []
    private let window: Int
    public init(window: Int = 30) { self.window = window }

    public mutating func tick(_ now: CFTimeInterval = CACurrentMediaTime()) -> Double {
        times.append(now)
        if times.count > window { times.removeFirst() }
        guard times.count > 1, let first = times.first, let last = times.last, last > first else { return 0 }
        return Double(times.count - 1) / (last - first)
    }
}

/// The compute units a user can pick (MLComputeUnits is not Hashable across SDKs, so we name them).
public enum ComputeChoice: String, CaseIterable, Identifiable {
    case all = "All", cpuAndNeuralEngine = "CPU+ANE", cpuAndGPU = "CPU+GPU", cpuOnly = "CPU"
    public var id: String { rawValue }
    var units: MLComputeUnits {
        switch self {
        case .all: return .all
        case .cpuAndNeuralEngine: return .cpuAndNeuralEngine
        case .cpuAndGPU: return .cpuAndGPU
        case .cpuOnly: return .cpuOnly
        }
    }
}

/// The stylising worker: owns the model and the fps meter, touched only on its own serial queue.
final class Stylist: @unchecked Sendable {
    private let queue = DispatchQueue(label: "stylise")
    private var model: StyleModel?
    private var meter = FpsMeter()
    private var busy = false

    func load(_ entry: StyleEntry, units: MLComputeUnits, done: @escaping @Sendable (String?) -> Void) {
        queue.async {
            do {
                self.model = try StyleModel(entry: entry, computeUnits: units)
                self.meter = FpsMeter()
                done(nil)
            } catch {
                self.model = nil
                done("cannot load \(entry.contract.file): \(error)")
            }
        }
    }

    /// Called on the camera queue; a frame arriving while one is in flight is dropped (keep-only-latest).
    func process(_ buffer: CVPixelBuffer, done: @escaping @Sendable (CGImage, Double) -> Void) {
        queue.async {
            guard let model = self.model, !self.busy else { return }
            self.busy = true
            defer { self.busy = false }
            guard let image = try? model.stylise(buffer) else { return }
            done(image, self.meter.tick())
        }
    }
}

@MainActor
public final class DemoModel: ObservableObject {
    @Published public var frame: CGImage?
    @Published public var status = "starting…"
    @Published public var fps = 0.0
    @Published public var styles: [StyleEntry] = StyleCatalog.load()
    @Published public var picked: StyleEntry? { didSet { reload() } }
    @Published public var compute: ComputeChoice = .all { didSet { reload() } }

    private let stylist = Stylist()
    private var camera: CameraSource?

    public init() {
        picked = styles.first
        if styles.isEmpty { status = "no styles bundled: copy exported .mlpackage files + contracts into Styles/" }
    }

    public func start() async {
        reload()
        let stylist = self.stylist
        let camera = CameraSource { [weak self] buffer in
            stylist.process(buffer) { image, rate in
                Task { @MainActor in
                    self?.frame = image
                    self?.fps = rate
                }
            }
        }
        self.camera = camera
        if !(await camera.start()) { status = "camera unavailable or permission denied" }
    }

    private func reload() {
        guard let entry = picked else { return }
        let choice = compute
        stylist.load(entry, units: choice.units) { [weak self] problem in
            Task { @MainActor in self?.status = problem ?? "\(entry.label) · \(choice.rawValue)" }
        }
    }
}

public struct ContentView: View {
    @StateObject private var demo = DemoModel()
    public init() {}

    public var body: some View {
        ZStack(alignment: .topLeading) {
            Color.black.ignoresSafeArea()
            if let frame = demo.frame {
                // Buffers arrive sensor-oriented (landscape); rotate for the portrait UI.
                Image(decorative: frame, scale: 1, orientation: .right)
                    .resizable().scaledToFill().ignoresSafeArea()
            }
            VStack(alignment: .leading, spacing: 6) {
                Text(String(format: "%.1f fps", demo.fps)).font(.system(.title3, design: .monospaced))
                Text(demo.status).font(.caption)
            }
            .padding(8).background(.black.opacity(0.5)).foregroundColor(.white).padding()
            VStack {
                Spacer()
                HStack {
                    Picker("Style", selection: $demo.picked) {
                        ForEach(demo.styles) { Text($0.label).tag(Optional($0)) }
                    }
                    Picker("Compute", selection: $demo.compute) {
                        ForEach(ComputeChoice.allCases) { Text($0.rawValue).tag($0) }
                    }
                }
                .pickerStyle(.menu).padding().background(.ultraThinMaterial)
            }
        }
        .task { await demo.start() }
    }
}
