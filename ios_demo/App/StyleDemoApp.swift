import StyleDemoKit
import SwiftUI

@main
struct StyleDemoApp: App {
    var body: some Scene {
        WindowGroup { ContentView() }
    }
}
